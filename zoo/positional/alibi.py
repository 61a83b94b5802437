"""ALiBi (Press et al., 2022): a fixed per-head penalty proportional to the distance, as a closed form (no table)."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from zoo.attention.bias import ClosedForm, Formula
from zoo.positional.base import PositionalEncoding
from zoo.positional.registry import register


def alibi_slopes(num_heads: int) -> np.ndarray:
  """Press et al.'s head slopes: the geometric sequence 2^(-8/n · (i+1)) for n a power of two; otherwise those of the
  closest smaller power of two followed by every other slope of the next power of two. [num_heads] float32."""
  if num_heads < 1:
    raise ValueError(f"alibi_slopes needs num_heads >= 1, got {num_heads}")

  def power_of_two_slopes(n: int) -> list[float]:
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]

  closest = 2 ** int(math.floor(math.log2(num_heads)))
  slopes = power_of_two_slopes(closest)
  if closest != num_heads:
    slopes += power_of_two_slopes(2 * closest)[0::2][: num_heads - closest]
  return np.asarray(slopes, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class AlibiFormula(Formula):
  """-slope · |k_pos - q_pos| (the symmetric form; a causal model only sees lags <= 0)."""

  def __call__(self, theta, q_pos, k_pos):
    (slope,) = theta
    return -slope * jnp.abs(k_pos - q_pos)


def alibi_bias(slopes) -> ClosedForm:
  """ALiBi's term for per-head `slopes` [heads]."""
  return ClosedForm(params=jnp.asarray(slopes, jnp.float32)[:, None], formula=AlibiFormula())


@register("alibi")
class Alibi(PositionalEncoding):
  relative = True

  def logit_bias(self, q, k) -> ClosedForm:
    del q, k  # evaluated at the attention call's positions
    return alibi_bias(alibi_slopes(self.dims.num_heads))
