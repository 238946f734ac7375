"""Placeholder while the LDM plugin is being written."""
from cmraudit_fm import FMGenerator as _Base


class LDMGenerator(_Base):
    name = "ldm"
