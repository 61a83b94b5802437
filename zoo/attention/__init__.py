"""Attention cores: the XLA reference (the oracle), chunked XLA, Pallas flash kernels, linear attention, the
structured terms they evaluate, and the registry of cores by declared capability."""

from zoo.attention.bias import (ClosedForm, Content, ContentTerm, DenseBias, Formula, KernelTerm, LagFunction,
                                LagTable, RelationTable, RelativeTable, Term, Tile, dense_sum, for_call, lags)
from zoo.attention.chunked import chunked_attention
from zoo.attention.cores import (CORES, Core, KVCache, Terms, attend, auto_choice, available, build, core_class,
                                 cores_serving)
from zoo.attention.masks import AttentionMask
from zoo.attention.pallas import flash_attention
from zoo.attention.reference import WEIGHTS, reference_attention

__all__ = ["CORES", "WEIGHTS", "AttentionMask", "ClosedForm", "Content", "ContentTerm", "Core", "DenseBias", "Formula",
           "KVCache", "KernelTerm", "LagFunction", "LagTable", "RelationTable", "RelativeTable", "Term", "Terms",
           "Tile", "attend", "auto_choice", "available", "build", "chunked_attention", "core_class", "cores_serving",
           "dense_sum", "flash_attention", "for_call", "lags", "reference_attention"]
