"""Sandwich (Chi et al., ACL 2023, "Dissecting Transformer Length Extrapolation via the Lens of Receptive Field
Analysis"): the parameter-free relative bias left of sinusoidal embeddings when the cross terms are dropped,

    bias_h(q, k) = (p(q) · p(k) − d̄/2) / r_h = (Σ_{i<d̄/2} cos((k − q) · ω_i) − d̄/2) / r_h,   ω_i = 10000^(−2i/d̄)

with p the d̄-dimensional sinusoidal embedding (`zoo.positional.sinusoidal`). It decays roughly logarithmically with
the distance, like KERPLE and T5, and is 0 at lag 0 (the −d̄/2 shifts every logit of a row equally: it changes
nothing but keeps the bias ≤ 0). Heads differ by a compression ratio r_h = 8h/H (h = 1..H) — ALiBi's head ladder —
that divides the whole bias, as NeMo's `SandwichRelativePositionEmbedding` computes it (the issue that asked for this
fix reports attention-gym's `sandwich` score_mod the same; before, zoo divided the lag inside the cosines). Frequencies
are the sinusoidal embedding's, i = 0 .. d̄/2 − 1 (NeMo's code starts at i = 1, one frequency over).

A `LagFunction` with r_h as its one constant per head: the formula costs d̄/2 cosines per logit, but it reads the lag
alone, so every core tabulates it once per call over the lags the call holds (O(heads · length) formulas) and reads
the table like T5's or RPE's (`LagTable`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from zoo.attention.bias import Formula, LagFunction
from zoo.config import check
from zoo.positional.base import PositionalEncoding
from zoo.positional.registry import register


@dataclasses.dataclass(frozen=True)
class SandwichOptions:
  dim: int = 128  # d̄: the sinusoidal embedding size (the paper uses the model's width)

  def __post_init__(self):
    check(self.dim >= 2 and self.dim % 2 == 0, f"sandwich: dim must be even and >= 2, got {self.dim}")


@dataclasses.dataclass(frozen=True)
class SandwichFormula(Formula):
  dim: int

  def __call__(self, theta, q_pos, k_pos):
    (ratio,) = theta
    lag = k_pos - q_pos
    total = 0.0
    for i in range(self.dim // 2):  # d̄/2 cosines: per table entry (`LagTable`), per logit off the table
      total = total + jnp.cos(lag * float(10000.0 ** (-2.0 * i / self.dim)))
    return (total - self.dim / 2) / ratio


def compression_ratios(num_heads: int) -> np.ndarray:
  """r_h = 8h/H for h = 1..H: [heads] float32."""
  return (8.0 * np.arange(1, num_heads + 1) / num_heads).astype(np.float32)


@register("sandwich")
class Sandwich(PositionalEncoding):
  Options = SandwichOptions
  relative = True

  def logit_bias(self, q, k) -> LagFunction:
    del q, k  # evaluated at the attention call's positions
    ratios = jnp.asarray(compression_ratios(self.dims.num_heads))[:, None]  # [heads, 1]
    return LagFunction(params=ratios, formula=SandwichFormula(self.options.dim))
