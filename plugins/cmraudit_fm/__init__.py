"""cmraudit's built-in conditional flow-matching generator (two stages), registered through the
``cmraudit.generators`` entry point like any third-party plugin."""
from .generator import FMGenerator

__all__ = ["FMGenerator"]
