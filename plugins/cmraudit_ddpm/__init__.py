"""cmraudit's built-in pixel-space DDPM generator (two stages), registered through the
``cmraudit.generators`` entry point like any third-party plugin."""
from .generator import DDPMGenerator

__all__ = ["DDPMGenerator"]
