"""GANBERT (seed paper 003) and pix2pix-3D training: MR -> two-time-step PET in SUVR."""
