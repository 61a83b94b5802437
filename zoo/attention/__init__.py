"""Attention cores: the XLA reference (the oracle), chunked XLA, Pallas flash kernels, and the dispatch by name."""

from zoo.attention.bias import AlibiBias, DenseBias, RelationTable, RelativeTable, dense_sum, lags
from zoo.attention.chunked import chunked_attention
from zoo.attention.dispatch import attend, auto_choice, available, get
from zoo.attention.masks import AttentionMask
from zoo.attention.pallas import flash_attention
from zoo.attention.reference import reference_attention

__all__ = ["AlibiBias", "AttentionMask", "DenseBias", "RelationTable", "RelativeTable", "attend", "auto_choice",
           "available", "chunked_attention", "dense_sum", "flash_attention", "get", "lags", "reference_attention"]
