"""cmraudit: train synthetic cardiac-MRI generators and audit what they leak."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("cmraudit")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
