"""Learned relative biases: one per-head table indexed by the lag `k_pos - q_pos` (Shaw et al. / T5 family).

* `rpe` — one entry per lag, lags clipped to ±max_distance (the URPE paper's B: `2·L_max - 1` rows).
* `t5_bias` — T5's buckets: exact for small lags, logarithmic up to `max_distance`, then one shared bucket.

Both return a structured `RelativeTable`, never a dense [heads, q_len, k_len] array.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.attention.bias import RelativeTable
from zoo.config import check
from zoo.positional.base import ModelDims, PositionalEncoding
from zoo.positional.registry import register


def t5_bucket(relative_position: jax.Array, *, bidirectional: bool, num_buckets: int = 32,
              max_distance: int = 128) -> jax.Array:
  """T5 / Mesh-TensorFlow relative-position buckets (int32, same shape as the input).

  `relative_position` is key position - query position. Bidirectional: half the buckets for keys after the query,
  half for keys before (and at) it. Causal: keys after the query all fall in bucket 0. In each half, the first
  `n/2` buckets are exact distances and the rest cover distances up to `max_distance` logarithmically.
  """
  n = jnp.asarray(relative_position, jnp.int32)
  offset = jnp.zeros_like(n)
  if bidirectional:
    num_buckets //= 2
    offset = jnp.where(n > 0, num_buckets, 0)
    distance = jnp.abs(n)
  else:
    distance = jnp.maximum(-n, 0)
  max_exact = num_buckets // 2
  log_ratio = jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact) / math.log(max_distance / max_exact)
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return offset + jnp.where(distance < max_exact, distance, large)


@dataclasses.dataclass(frozen=True)
class LagIndex:
  """A hashable lag -> table-row map (static under jit, evaluable inside kernels).

  kind "clip": row = clip(lag, -max_distance, max_distance) + max_distance.
  kind "t5": row = t5_bucket(lag, bidirectional, num_buckets, max_distance).
  """

  kind: Literal["clip", "t5"]
  max_distance: int
  num_buckets: int = 0
  bidirectional: bool = True

  @property
  def rows(self) -> int:
    return 2 * self.max_distance + 1 if self.kind == "clip" else self.num_buckets

  def __call__(self, lag: jax.Array) -> jax.Array:
    if self.kind == "clip":
      return jnp.clip(lag, -self.max_distance, self.max_distance).astype(jnp.int32) + self.max_distance
    return t5_bucket(lag, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
                     max_distance=self.max_distance)


@dataclasses.dataclass(frozen=True)
class RpeOptions:
  max_distance: int = 127  # lags beyond ±max_distance share the edge entry (URPE: L_max - 1 with L_max = 128)
  share_across_layers: bool = True  # one table for all layers, as in the URPE paper

  def __post_init__(self):
    check(self.max_distance >= 1, f"rpe: max_distance must be >= 1, got {self.max_distance}")


@dataclasses.dataclass(frozen=True)
class T5BiasOptions:
  num_buckets: int = 32
  max_distance: int = 128
  bidirectional: bool | None = None  # None: bidirectional for encoders, causal buckets for decoders
  share_across_layers: bool = True  # T5 computes the bias once and reuses it in every layer

  def __post_init__(self):
    check(self.num_buckets >= 4, f"t5_bias: num_buckets must be >= 4, got {self.num_buckets}")
    check(self.max_distance > self.num_buckets // 2,
          f"t5_bias: max_distance ({self.max_distance}) must exceed the exact range num_buckets // 2 "
          f"({self.num_buckets // 2})")


def lag_index(name: str, options, dims: ModelDims) -> LagIndex:
  """The lag -> row map of a learned relative bias: `name` is "rpe" or "t5_bias" with their options."""
  if name == "rpe":
    return LagIndex("clip", options.max_distance)
  bidirectional = (not dims.causal) if options.bidirectional is None else options.bidirectional
  return LagIndex("t5", options.max_distance, options.num_buckets, bidirectional)


class LearnedRelativeBias(PositionalEncoding):
  """B[h, i, j] = table[h, index(k_pos[j] - q_pos[i])], the table initialised N(0, 0.02)."""

  relative = True

  def __init__(self, options, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    self.index = lag_index(self.name, options, dims)
    init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("heads", None))
    self.table = nnx.Param(init(rngs.params(), (dims.num_heads, self.index.rows)))  # [heads, rows]

  def logit_bias(self, q, k) -> RelativeTable:
    del q, k  # evaluated at the attention call's positions
    return RelativeTable(table=self.table[...], index_fn=self.index)


@register("rpe")
class Rpe(LearnedRelativeBias):
  Options = RpeOptions


@register("t5_bias")
class T5Bias(LearnedRelativeBias):
  Options = T5BiasOptions
