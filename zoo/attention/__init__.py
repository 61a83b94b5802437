"""Attention cores: the XLA reference (the oracle), chunked XLA, Pallas flash kernels, linear attention, the
structured terms they evaluate, and the dispatch by declared capability."""

from zoo.attention.bias import (ClosedForm, Content, ContentTerm, DenseBias, Formula, KernelTerm, RelationTable,
                                RelativeTable, Term, Tile, dense_sum, lags)
from zoo.attention.chunked import chunked_attention
from zoo.attention.dispatch import CORES, Core, attend, auto_choice, available, core, cores_serving, get
from zoo.attention.masks import AttentionMask
from zoo.attention.pallas import flash_attention
from zoo.attention.reference import reference_attention

__all__ = ["CORES", "AttentionMask", "ClosedForm", "Content", "ContentTerm", "Core", "DenseBias", "Formula",
           "KernelTerm", "RelationTable", "RelativeTable", "Term", "Tile", "attend", "auto_choice", "available", "chunked_attention", "core",
           "cores_serving", "dense_sum", "flash_attention", "get", "lags", "reference_attention"]
