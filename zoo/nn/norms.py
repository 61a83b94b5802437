"""Normalisation layers by name: LayerNorm (Vaswani / BERT) or RMSNorm (T5 / LLaMA)."""

from __future__ import annotations

from flax import nnx

NORMS = ("layernorm", "rmsnorm")


def make_norm(kind: str, features: int, *, dtype, rngs: nnx.Rngs) -> nnx.Module:
  """A norm over the last axis whose scale (and LayerNorm's bias) carry the logical axis name `embed`."""
  ones = nnx.with_partitioning(nnx.initializers.ones, ("embed",))
  if kind == "layernorm":
    zeros = nnx.with_partitioning(nnx.initializers.zeros, ("embed",))
    return nnx.LayerNorm(features, epsilon=1e-6, dtype=dtype, scale_init=ones, bias_init=zeros, rngs=rngs)
  if kind == "rmsnorm":
    return nnx.RMSNorm(features, epsilon=1e-6, dtype=dtype, scale_init=ones, rngs=rngs)
  raise ValueError(f"unknown norm {kind!r}; valid choices: {', '.join(NORMS)}")
