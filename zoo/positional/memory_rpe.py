"""The sparse-memory RPE of Wang & E (NeurIPS 2024; shared/papers/sparse_memory.md): `R[t, s] = p · φ(t − s)` per head.

The paper studies how the *type* of a relative encoding decides which memories a Transformer represents cheaply:

* `phi="log"` — φ(z) = −log z, the stand-in for T5 / KERPLE-log: attention weights ∝ z^(−p), heavy-tailed, so one
  head reaches far (polynomially decaying memories).
* `phi="lin"` — φ(z) = −z, the stand-in for ALiBi: weights ∝ e^(−p z), light-tailed (exponentially decaying ones).

z = |t − s| is the distance (a causal model sees only s ≤ t, the paper's setting; an encoder sees both sides
symmetrically). The paper defines φ for z ≥ 1; at z = 0 (a token attending to itself) the log type uses z = 1, so
the current token weighs like its predecessor — the residual stream carries x_t anyway. p > 0 is trainable per head,
stored as log p; heads start at log-uniformly spread p in [`p_min`, `p_max`] (the paper does not state its init) so a
many-head model starts with a range of memory lengths. A `ClosedForm`, so it runs in every core, the Pallas kernels
included; with `model.attention_logits="positional"` it is the paper's dot-product-free attention.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.attention.bias import ClosedForm, Formula
from zoo.config import check
from zoo.positional.base import ModelDims, PositionalEncoding
from zoo.positional.registry import register


@dataclasses.dataclass(frozen=True)
class LogTypeFormula(Formula):
  """p · φ(z) with φ(z) = −log max(z, 1)."""

  def __call__(self, theta, q_pos, k_pos):
    (p,) = theta
    return -p * jnp.log(jnp.maximum(jnp.abs(q_pos - k_pos), 1.0))


@dataclasses.dataclass(frozen=True)
class LinTypeFormula(Formula):
  """p · φ(z) with φ(z) = −z."""

  def __call__(self, theta, q_pos, k_pos):
    (p,) = theta
    return -p * jnp.abs(q_pos - k_pos)


FORMULAS = {"log": LogTypeFormula(), "lin": LinTypeFormula()}


def initial_p(num_heads: int, p_min: float, p_max: float) -> np.ndarray:
  """[heads] float32: p at the midpoints of `num_heads` equal log-spaced intervals of [p_min, p_max]."""
  fractions = (np.arange(num_heads) + 0.5) / num_heads
  return np.exp(np.log(p_min) + fractions * (np.log(p_max) - np.log(p_min))).astype(np.float32)


@register("memory_rpe")
class MemoryRpe(PositionalEncoding):
  """Per-head log p `[heads]`, shared by every layer."""

  relative = True

  @dataclasses.dataclass(frozen=True)
  class Options:
    phi: Literal["log", "lin"] = "log"
    p_min: float = 0.05
    p_max: float = 4.0

    def __post_init__(self):
      check(0 < self.p_min <= self.p_max, f"positional encoding 'memory_rpe': need 0 < p_min <= p_max, got "
                                          f"p_min={self.p_min}, p_max={self.p_max}")

  def __init__(self, options, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    log_p = jnp.log(initial_p(dims.num_heads, options.p_min, options.p_max))
    self.log_p = nnx.Param(nnx.with_partitioning(lambda *_: log_p, ("heads",))(rngs.params(), log_p.shape))

  def logit_bias(self, q, k) -> ClosedForm:
    del q, k  # evaluated at the attention call's positions
    return ClosedForm(params=jnp.exp(self.log_p[...])[:, None], formula=FORMULAS[self.options.phi])  # [heads, 1]
