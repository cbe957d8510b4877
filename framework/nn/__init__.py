"""Shared neural network modules: the conditional backbone and adapters."""

from framework.nn.adapters import CausalLMAdapter, HFCache, UNetAdapter, class_embeds_needed
from framework.nn.backbone import Backbone, BackboneConfig, KVCache

__all__ = ["Backbone", "BackboneConfig", "CausalLMAdapter", "HFCache", "KVCache", "UNetAdapter",
           "class_embeds_needed"]
