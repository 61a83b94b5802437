"""The position-wise feed-forward network: plain (GELU: Vaswani / BERT; tanh-GELU: GPT-2; ReLU: T5) or gated
(SwiGLU: Shazeer 2020, LLaMA; tanh-GEGLU: T5 v1.1)."""

from __future__ import annotations

import functools

import jax
from flax import nnx

# name -> (nonlinearity, gated). Gated: act(wi_gate(x)) · wi(x). Exact erf GELU is BERT's and fairseq's; the tanh
# approximation is GPT-2's `gelu_new` and T5 v1.1's gated GELU — they differ by up to ~1e-3, beyond a parity check.
ACTIVATIONS = {
    "gelu": (functools.partial(jax.nn.gelu, approximate=False), False),
    "gelu_tanh": (functools.partial(jax.nn.gelu, approximate=True), False),
    "relu": (jax.nn.relu, False),
    "swiglu": (jax.nn.silu, True),
    "geglu_tanh": (functools.partial(jax.nn.gelu, approximate=True), True),
}


def dense(in_features: int, out_features: int, axes: tuple[str, str], *, use_bias: bool = False, dtype,
          rngs: nnx.Rngs) -> nnx.Linear:
  """A linear layer whose kernel (and bias, when it has one) carries the logical axis names `axes`."""
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), axes)
  bias_init = nnx.with_partitioning(nnx.initializers.zeros, axes[1:])
  return nnx.Linear(in_features, out_features, use_bias=use_bias, kernel_init=init, bias_init=bias_init,
                    dtype=dtype, rngs=rngs)


class Mlp(nnx.Module):
  def __init__(self, d_model: int, mlp_dim: int, activation: str, *, use_bias: bool = False, dtype,
               rngs: nnx.Rngs):
    if activation not in ACTIVATIONS:
      raise ValueError(f"unknown activation {activation!r}; valid choices: {', '.join(ACTIVATIONS)}")
    self.activation = activation
    _, gated = ACTIVATIONS[activation]
    self.wi = dense(d_model, mlp_dim, ("embed", "mlp"), use_bias=use_bias, dtype=dtype, rngs=rngs)
    if gated:
      self.wi_gate = dense(d_model, mlp_dim, ("embed", "mlp"), use_bias=use_bias, dtype=dtype, rngs=rngs)
    self.wo = dense(mlp_dim, d_model, ("mlp", "embed"), use_bias=use_bias, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:  # [..., d_model] -> [..., d_model]
    fn, gated = ACTIVATIONS[self.activation]
    if gated:
      return self.wo(fn(self.wi_gate(x)) * self.wi(x))
    return self.wo(fn(self.wi(x)))
