"""Shared neural network modules: the conditional backbone and adapters."""

from .backbone import Backbone, BackboneConfig, KVCache

__all__ = ["Backbone", "BackboneConfig", "KVCache"]
