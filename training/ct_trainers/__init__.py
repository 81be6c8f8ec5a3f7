"""Trainers for the CT -> PET networks of seed paper 000: FCN-4s and pix2pix (U-Net + PatchGAN)."""

from training.ct_trainers.config import TrainConfig
from training.ct_trainers.fcn import train_fcn
from training.ct_trainers.pix2pix import train_pix2pix

__all__ = ["TrainConfig", "train_fcn", "train_pix2pix"]
