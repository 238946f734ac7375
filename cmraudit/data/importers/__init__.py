"""Importers from the layouts users have on disk to the prepared-dataset format."""
from ._common import ImportSummary
from .nifti import import_acdc, import_folder, import_mnms

__all__ = ["ImportSummary", "import_acdc", "import_folder", "import_mnms"]
try:  # DICOM + contours (Sunnybrook); optional until its module lands
    from .dicom import import_dicom, import_sunnybrook  # noqa: F401

    __all__ += ["import_dicom", "import_sunnybrook"]
except ImportError:  # pragma: no cover
    pass
