"""cmraudit's built-in latent diffusion generator (two stages), registered through the
``cmraudit.generators`` entry point like any third-party plugin."""
from .generator import LDMGenerator

__all__ = ["LDMGenerator"]
