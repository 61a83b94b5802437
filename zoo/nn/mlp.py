"""The position-wise feed-forward network: plain (GELU: Vaswani / BERT; tanh-GELU: GPT-2; ReLU: T5) or gated
(SwiGLU: Shazeer 2020, LLaMA; tanh-GEGLU: T5 v1.1)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
from flax import nnx

from zoo.config import check

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


@dataclasses.dataclass(frozen=True)
class MlpConfig:
  """A model config's `mlp` section, taken as it is by `Mlp`."""

  # The hidden width; None: 4 · d_model (`resolved_dim`); 0: no feed-forward layer at all (the block skips it and
  # its norm: Wang & E's attention-only model).
  dim: int | None = None
  activation: Literal["gelu", "gelu_tanh", "relu", "swiglu", "geglu_tanh"] = "gelu"  # a name from ACTIVATIONS
  bias: bool = False  # GPT-2 / BERT carry biases; zoo's own models have none

  def __post_init__(self):
    check(self.dim is None or self.dim >= 0,
          f"model.mlp: dim must be None (derived), 0 (no feed-forward layer) or >= 1, got {self.dim}")
    check(self.activation in ACTIVATIONS,
          f"model.mlp: unknown activation {self.activation!r}; valid choices: {', '.join(ACTIVATIONS)}")

  def resolved_dim(self, d_model: int) -> int:
    return 4 * d_model if self.dim is None else self.dim


class Mlp(nnx.Module):
  def __init__(self, d_model: int, config: MlpConfig, *, dtype, rngs: nnx.Rngs):
    self.activation = config.activation
    _, gated = ACTIVATIONS[config.activation]
    layer = lambda n_in, n_out, axes: dense(n_in, n_out, axes, use_bias=config.bias, dtype=dtype, rngs=rngs)
    hidden = config.resolved_dim(d_model)
    self.wi = layer(d_model, hidden, ("embed", "mlp"))
    if gated:
      self.wi_gate = layer(d_model, hidden, ("embed", "mlp"))
    self.wo = layer(hidden, d_model, ("mlp", "embed"))

  def __call__(self, x: jax.Array) -> jax.Array:  # [..., d_model] -> [..., d_model]
    fn, gated = ACTIVATIONS[self.activation]
    if gated:
      return self.wo(fn(self.wi_gate(x)) * self.wi(x))
    return self.wo(fn(self.wi(x)))
