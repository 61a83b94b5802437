"""ALiBi (Press et al., 2022): a fixed per-head penalty proportional to the distance, as a closed form (no table)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from zoo.attention.bias import AlibiBias
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


@register("alibi")
class Alibi(PositionalEncoding):
  relative = True

  def logit_bias(self, q_pos, k_pos) -> AlibiBias:
    return AlibiBias(slopes=jnp.asarray(alibi_slopes(self.dims.num_heads)), q_pos=q_pos, k_pos=k_pos)
