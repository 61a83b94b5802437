"""Normalisation layers by name: LayerNorm (Vaswani / BERT), RMSNorm (T5 / LLaMA) or none (the identity: a model
linear in its inputs where the rest is, as Wang & E's sparse-memory model)."""

from __future__ import annotations

from flax import nnx

NORMS = ("layernorm", "rmsnorm", "none")


class Identity(nnx.Module):
  """norm.kind="none": no normalisation and no parameters."""

  def __call__(self, x):
    return x


def make_norm(kind: str, features: int, *, dtype, rngs: nnx.Rngs, epsilon: float = 1e-6) -> nnx.Module:
  """A norm over the last axis whose scale (and LayerNorm's bias) carry the logical axis name `embed`; `epsilon`
  as the pretrained model had it (BERT / GPT-2: 1e-12 / 1e-5) — it changes the outputs beyond 1e-4."""
  ones = nnx.with_partitioning(nnx.initializers.ones, ("embed",))
  if kind == "layernorm":
    zeros = nnx.with_partitioning(nnx.initializers.zeros, ("embed",))
    return nnx.LayerNorm(features, epsilon=epsilon, dtype=dtype, scale_init=ones, bias_init=zeros, rngs=rngs)
  if kind == "rmsnorm":
    return nnx.RMSNorm(features, epsilon=epsilon, dtype=dtype, scale_init=ones, rngs=rngs)
  if kind == "none":
    return Identity()
  raise ValueError(f"unknown norm {kind!r}; valid choices: {', '.join(NORMS)}")
