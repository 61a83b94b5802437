"""The position-wise feed-forward network: GELU (Vaswani / BERT) or SwiGLU (Shazeer 2020, LLaMA)."""

from __future__ import annotations

import jax
from flax import nnx

ACTIVATIONS = ("gelu", "swiglu")


def dense(in_features: int, out_features: int, axes: tuple[str, str], *, dtype, rngs: nnx.Rngs) -> nnx.Linear:
  """A bias-free linear layer whose kernel carries the logical axis names `axes`."""
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), axes)
  return nnx.Linear(in_features, out_features, use_bias=False, kernel_init=init, dtype=dtype, rngs=rngs)


class Mlp(nnx.Module):
  def __init__(self, d_model: int, mlp_dim: int, activation: str, *, dtype, rngs: nnx.Rngs):
    if activation not in ACTIVATIONS:
      raise ValueError(f"unknown activation {activation!r}; valid choices: {', '.join(ACTIVATIONS)}")
    self.activation = activation
    self.wi = dense(d_model, mlp_dim, ("embed", "mlp"), dtype=dtype, rngs=rngs)
    if activation == "swiglu":
      self.wi_gate = dense(d_model, mlp_dim, ("embed", "mlp"), dtype=dtype, rngs=rngs)
    self.wo = dense(mlp_dim, d_model, ("mlp", "embed"), dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:  # [..., d_model] -> [..., d_model]
    if self.activation == "swiglu":
      hidden = jax.nn.silu(self.wi_gate(x)) * self.wi(x)
    else:
      hidden = jax.nn.gelu(self.wi(x), approximate=False)  # exact erf GELU, as in BERT and fairseq
    return self.wo(hidden)
