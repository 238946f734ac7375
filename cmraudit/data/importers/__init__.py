"""Importers from the layouts users have on disk to the prepared-dataset format."""
from ._common import ImportSummary
from .dicom import import_dicom, import_sunnybrook
from .nifti import import_acdc, import_folder, import_mnms

__all__ = ["ImportSummary", "import_acdc", "import_dicom", "import_folder", "import_mnms", "import_sunnybrook"]
