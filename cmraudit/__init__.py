"""cmraudit: train synthetic cardiac-MRI generators and audit what they leak."""
import os as _os

# idle OpenMP workers sleep instead of spinning (must be set before torch loads OpenMP; a user's value wins):
# spinning threads steal the CPU from every other process on a shared machine (cmraudit.cpu)
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("cmraudit")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
