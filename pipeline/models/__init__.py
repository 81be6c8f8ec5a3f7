"""Network architectures (inference needs them; `training` imports them from here) and packages."""

from pipeline.models.package import DEMO_PACKAGE, ModelPackage, load_package, save_package

__all__ = ["DEMO_PACKAGE", "ModelPackage", "load_package", "save_package"]
