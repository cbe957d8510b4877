"""The text modality: Shakespeare's speeches with genre and speaker conditions, a byte-level BPE
representation, plain-text sample files, and a genre-classifier judge."""

from .plugin import TextModality

__all__ = ["TextModality"]
