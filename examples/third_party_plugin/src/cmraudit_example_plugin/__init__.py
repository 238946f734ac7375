"""Example cmraudit generator plugin: per-label intensity model (template for plugin authors)."""
from .generator import LabelMeanGenerator

__all__ = ["LabelMeanGenerator"]
