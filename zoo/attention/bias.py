"""Structured attention biases and scales: what the positional hooks hand to every attention implementation.

A relative encoding never builds a dense `[batch, heads, q_len, k_len]` array. It returns a small description:

* `RelativeTable` — a learned per-head table indexed by a *relation* between query and key: the sequence lag
  `k_pos - q_pos` mapped to a row by a static, hashable `index_fn` (clipped lag, T5 log buckets, ...), O(heads ·
  rows) memory. Used as an additive logit bias (T5, per-lag RPE, URPE's B) or as a post-softmax scale (URPE's C).
* `AlibiBias` — the closed form `-slope[h] · |k_pos - q_pos|`, no table at all.
* `RelationTable` — a per-head table indexed by a relation that is *not* a function of positions: an integer
  `[batch, q_len, k_len]` matrix of table rows (a graph's shortest-path-distance buckets). O(batch · L²) integers but
  still O(heads · rows) parameters; the reference path expands it, the kernels do not read relation tiles yet.
* `DenseBias` — an already dense `[batch, heads, q_len, k_len]` bias (Graphormer's edge encoding, a mean over each
  shortest path's edges), reference path only.

Each term carries the positions it is evaluated at, so an implementation has everything it needs: the reference path
calls `dense()`, a kernel evaluates the same formula tile by tile. `dense()` is the one place where structure turns
into an `L × L` array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import struct

# `index_fn(lag)` maps integer lags `k_pos - q_pos` (any shape) to int32 table rows in [0, rows).
IndexFn = Callable[[jax.Array], jax.Array]


def lags(q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
  """`k_pos - q_pos` for every query/key pair: [batch, q_len], [batch, k_len] -> [batch, q_len, k_len]."""
  return k_pos[:, None, :].astype(jnp.int32) - q_pos[:, :, None].astype(jnp.int32)


@struct.dataclass
class RelativeTable:
  """value[b, h, i, j] = table[h, index_fn(k_pos[b, j] - q_pos[b, i])]."""

  table: jax.Array  # [heads, rows]
  q_pos: jax.Array  # [batch, q_len] int
  k_pos: jax.Array  # [batch, k_len] int
  index_fn: IndexFn = struct.field(pytree_node=False)

  def dense(self) -> jax.Array:
    """The expanded term, [batch, heads, q_len, k_len], in the table's dtype."""
    rows = self.index_fn(lags(self.q_pos, self.k_pos))  # [batch, q_len, k_len]
    return jnp.moveaxis(self.table[:, rows], 0, 1)


@struct.dataclass
class AlibiBias:
  """value[b, h, i, j] = -slopes[h] · |k_pos[b, j] - q_pos[b, i]| (Press et al., symmetric form)."""

  slopes: jax.Array  # [heads]
  q_pos: jax.Array  # [batch, q_len] int
  k_pos: jax.Array  # [batch, k_len] int

  def dense(self) -> jax.Array:
    distance = jnp.abs(lags(self.q_pos, self.k_pos)).astype(jnp.float32)  # [batch, q_len, k_len]
    return -self.slopes[None, :, None, None].astype(jnp.float32) * distance[:, None]


@struct.dataclass
class RelationTable:
  """value[b, h, i, j] = table[h, relation[b, i, j]]: a table read through a per-example relation matrix."""

  table: jax.Array  # [heads, rows]
  relation: jax.Array  # [batch, q_len, k_len] int32 table rows

  def dense(self) -> jax.Array:
    return jnp.moveaxis(self.table[:, self.relation], 0, 1)  # [batch, heads, q_len, k_len]


@struct.dataclass
class DenseBias:
  """A bias computed densely by the model: value[b, h, i, j]."""

  value: jax.Array  # [batch, heads, q_len, k_len]

  def dense(self) -> jax.Array:
    return self.value


BiasTerm = RelativeTable | AlibiBias | RelationTable | DenseBias
ScaleTerm = RelativeTable | RelationTable


def dense_sum(terms: Sequence[BiasTerm]) -> jax.Array | float:
  """The sum of the dense expansions of `terms` ([batch, heads, q_len, k_len], float32), or 0.0 if none."""
  total: jax.Array | float = 0.0
  for term in terms:
    total = total + term.dense().astype(jnp.float32)
  return total
