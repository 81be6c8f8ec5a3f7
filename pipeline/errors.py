"""One exception hierarchy for the whole product.

`pipeline` owns it because both `dicom_node` and `training` import `pipeline`, never the reverse.
At the DICOM boundary each class maps to a status code (see `dicom_status`).
"""


class VpetError(Exception):
    """Base of every error the product raises on purpose. The message names the cause."""

    dicom_status = 0xC211  # Refused: catch-all / processing failure


class ConfigError(VpetError):
    """Invalid configuration; the message names the offending key."""


class InputError(VpetError):
    """Input data cannot be used (not DICOM, missing tag, odd geometry). Names the tag or cause."""

    dicom_status = 0xC210  # Cannot understand


class GeometryError(InputError):
    """The series geometry is inconsistent or unsupported (missing spacing, tilt, duplicates)."""


class SUVError(InputError):
    """PET headers do not allow a SUV computation; the message names the tag."""


class ModelError(VpetError):
    """A model package is missing, invalid or incompatible with the recipe."""


class OutOfResources(VpetError):
    """Disk or memory guard tripped."""

    dicom_status = 0xA700


class DeliveryError(VpetError):
    """A destination refused or could not be reached."""
