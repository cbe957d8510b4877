"""The image modality: procedural shapes and handwritten digits, pixel-patch and palette-token
representations, labelled PNG grids, and classifier-based metrics."""

from .plugin import ImageModality

__all__ = ["ImageModality"]
