"""Attention cores: the XLA reference (the oracle) and the dispatch that picks an implementation by name."""

from zoo.attention.bias import AlibiBias, RelativeTable, dense_sum, lags
from zoo.attention.dispatch import attend, available, get
from zoo.attention.masks import AttentionMask
from zoo.attention.reference import reference_attention

__all__ = ["AlibiBias", "AttentionMask", "RelativeTable", "attend", "available", "dense_sum", "get", "lags",
           "reference_attention"]
