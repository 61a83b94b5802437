"""Structured bias / scale terms and masks as kernel operands, and their evaluation on one [bq, bk] tile.

The kernels never see a dense `[batch, heads, q_len, k_len]` array. A call is described by
* a static `Layout` (hashable, so it can be a `custom_vjp` non-differentiable argument and a kernel closure): which
  terms there are, what relation each one reads, which mask rules apply;
* two small integer arrays: `q_info [batch, q_len, q_cols]` (per query: positions, segment id) and
  `k_info [batch, k_rows, k_len]` (per key: positions, segment id, validity). Queries run down the sublanes and keys
  along the lanes, so a tile's `q_info[:, c:c+1] [bq, 1]` and `k_info[r:r+1, :] [1, bk]` broadcast to [bq, bk]
  without relayouts (the layout JAX's TPU flash kernel uses for segment ids);
* one float32 table per term, `[heads, width]` (a `RelativeTable`'s table, ALiBi's slopes in column 0), zero-padded
  to a power-of-two width ≥ 128 so it is a legal block on TPU (lanes) and GPU (Triton wants powers of two). A kernel
  instance gets its head's row only (a `[1, width]` block, in SMEM on TPU), so the table size never limits the
  head count.

A term = a *relation* tile (int32 [bq, bk]) + a lookup. Relations today are position lags (`LagRelation`: `k_pos[j]
- q_pos[i]` from one column of q_info and one row of k_info). A graph relation that is not a function of positions
(Graphormer's shortest-path distance, an integer [batch, q_len, k_len] matrix) plugs in as another relation class
whose `tile` reads a [bq, bk] block of that matrix from an extra kernel operand; the lookups (`TableTerm`) and the
kernels stay as they are, because they only ever see the relation tile.

Lookup of `table[h, index_fn(relation)]` inside a kernel: Mosaic has no general vector gather, so the tile is built
by selects over the table rows that occur in the tile (`min(rows) .. max(rows)`, one `where` per row, the table
entries read as scalars from SMEM). Near the diagonal that is ≈ bq + bk rows for a per-lag table, 1 row far from it
(clipped lags), at most `num_buckets` for T5. The table gradient is the same loop with a sum per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from zoo.attention.bias import AlibiBias, IndexFn, RelativeTable
from zoo.attention.masks import AttentionMask


@dataclasses.dataclass(frozen=True)
class LagRelation:
  """relation[i, j] = k_pos[j] - q_pos[i], positions from column `q_col` of q_info and row `k_row` of k_info."""

  q_col: int
  k_row: int

  def tile(self, q_info: jax.Array, k_info: jax.Array) -> jax.Array:
    """q_info [bq, q_cols], k_info [k_rows, bk] -> [bq, bk] int32."""
    return k_info[self.k_row:self.k_row + 1, :] - q_info[:, self.q_col:self.q_col + 1]


@dataclasses.dataclass(frozen=True)
class TableTerm:
  """A `RelativeTable`: value = table[head, index_fn(relation)], from the head's row."""

  relation: LagRelation
  index_fn: IndexFn

  def values(self, table_ref, relation: jax.Array) -> jax.Array:
    """[bq, bk] float32 from the head's [1, width] table row."""
    rows = self.index_fn(relation)
    pick = lambda r, acc: jnp.where(rows == r, table_ref[0, r], acc)
    return lax.fori_loop(jnp.min(rows), jnp.max(rows) + 1, pick, jnp.zeros(rows.shape, jnp.float32))

  def grad(self, g: jax.Array, relation: jax.Array, width: int) -> jax.Array:
    """d(Σ g ⊙ values)/d table[head] for g [bq, bk]: [1, width] float32."""
    rows = self.index_fn(relation)
    lane = lax.broadcasted_iota(jnp.int32, (1, width), 1)
    add = lambda r, acc: acc + jnp.where(lane == r, jnp.sum(jnp.where(rows == r, g, 0.0), keepdims=True), 0.0)
    return lax.fori_loop(jnp.min(rows), jnp.max(rows) + 1, add, jnp.zeros((1, width), jnp.float32))


@dataclasses.dataclass(frozen=True)
class AlibiTerm:
  """ALiBi's closed form: value = -slope[head] · |relation|, the slope in column 0 of the table."""

  relation: LagRelation

  def values(self, table_ref, relation: jax.Array) -> jax.Array:
    return -table_ref[0, 0] * jnp.abs(relation).astype(jnp.float32)

  def grad(self, g: jax.Array, relation: jax.Array, width: int) -> jax.Array:
    lane = lax.broadcasted_iota(jnp.int32, (1, width), 1)
    return jnp.where(lane == 0, jnp.sum(-jnp.abs(relation).astype(jnp.float32) * g, keepdims=True), 0.0)


Term = TableTerm | AlibiTerm


@dataclasses.dataclass(frozen=True)
class Layout:
  """The static description of one attention call (see the module docstring)."""

  bias: tuple[Term, ...]
  scale: Term | None  # URPE's C, applied after the softmax
  mask_relation: LagRelation  # the mask's own positions (causal: allowed where relation <= 0)
  causal: bool
  segments: tuple[int, int] | None  # (q_info column, k_info row) of the segment ids
  valid_row: int | None  # k_info row of key validity (1 valid, 0 padding)
  softmax_scale: float

  @property
  def terms(self) -> tuple[Term, ...]:
    """Bias terms then the scale: the order of the table operands."""
    return self.bias + (() if self.scale is None else (self.scale,))

  def allowed(self, q_info: jax.Array, k_info: jax.Array) -> jax.Array:
    """[bq, bk] bool: the mask rules of `AttentionMask.dense`, on one tile."""
    shape = (q_info.shape[0], k_info.shape[1])
    allowed = jnp.ones(shape, bool)
    if self.causal:
      allowed &= self.mask_relation.tile(q_info, k_info) <= 0
    if self.segments is not None:
      col, row = self.segments
      allowed &= q_info[:, col:col + 1] == k_info[row:row + 1, :]
    if self.valid_row is not None:
      allowed &= k_info[self.valid_row:self.valid_row + 1, :] != 0
    return allowed

  def may_attend(self, q_info: jax.Array, k_info: jax.Array):
    """False only where no key of the tile can be seen (causal: every key position after every query position), so
    the kernel skips the tile; decided from positions, which makes it right for packing and KV-cache offsets too."""
    if not self.causal:
      return True
    rel = self.mask_relation
    return jnp.min(k_info[rel.k_row:rel.k_row + 1, :]) <= jnp.max(q_info[:, rel.q_col:rel.q_col + 1])


def table_width(rows: int) -> int:
  """A power of two ≥ 128 and ≥ rows (a legal TPU lane block and Triton block)."""
  return max(128, pl.next_power_of_2(rows))


def _pad_to(x: jax.Array, axis: int, size: int, value=0) -> jax.Array:
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, pad, constant_values=value)


def prepare(mask: AttentionMask, bias: Sequence, scale, softmax_scale: float, q_len: int, k_len: int):
  """Turns the structured inputs into (layout, q_info [batch, q_len, q_cols], k_info [batch, k_rows, k_len],
  tables [heads, width] float32 per term), padded to `q_len` / `k_len` (padded keys are invalid)."""
  positions: list[tuple[jax.Array, jax.Array]] = [(mask.q_pos, mask.k_pos)]

  def relation(term) -> LagRelation:
    # Terms usually share the mask's position arrays (same objects); each distinct pair gets one column / row.
    for slot, (qp, kp) in enumerate(positions):
      if qp is term.q_pos and kp is term.k_pos:
        return LagRelation(slot, slot)
    positions.append((term.q_pos, term.k_pos))
    return LagRelation(len(positions) - 1, len(positions) - 1)

  def convert(term, role: str):
    if isinstance(term, RelativeTable):
      return TableTerm(relation(term), term.index_fn), term.table
    if isinstance(term, AlibiBias) and role == "bias":
      return AlibiTerm(relation(term)), term.slopes[:, None]
    raise ValueError(f"attention impl 'pallas' cannot apply a {type(term).__name__} as a {role} term (it knows "
                     f"RelativeTable{' and AlibiBias' if role == 'bias' else ''}); use impl='chunked' or 'xla'")

  converted = [convert(t, "bias") for t in bias] + ([] if scale is None else [convert(scale, "scale")])
  tables = tuple(_pad_to(table.astype(jnp.float32), 1, table_width(table.shape[1])) for _, table in converted)
  q_cols = [qp for qp, _ in positions]
  k_rows = [kp for _, kp in positions]
  segments = None
  if mask.q_segment_ids is not None or mask.k_segment_ids is not None:
    if mask.q_segment_ids is None or mask.k_segment_ids is None:
      raise ValueError("segment ids must be given for both queries and keys, or for neither")
    segments = (len(q_cols), len(k_rows))
    q_cols.append(mask.q_segment_ids)
    k_rows.append(mask.k_segment_ids)
  valid_row = None
  if mask.k_valid is not None or k_len > mask.k_pos.shape[1]:
    valid_row = len(k_rows)
    k_rows.append(jnp.ones(mask.k_pos.shape, bool) if mask.k_valid is None else mask.k_valid)
  q_info = _pad_to(jnp.stack([c.astype(jnp.int32) for c in q_cols], axis=-1), 1, q_len)
  k_info = _pad_to(jnp.stack([r.astype(jnp.int32) for r in k_rows], axis=1), 2, k_len)
  # Power-of-two column / row counts: legal Triton blocks (TPU blocks take the full dimension anyway).
  q_info = _pad_to(q_info, 2, pl.next_power_of_2(q_info.shape[2]))
  k_info = _pad_to(k_info, 1, pl.next_power_of_2(k_info.shape[1]))
  n_bias = len(bias)
  layout = Layout(bias=tuple(t for t, _ in converted[:n_bias]),
                  scale=converted[n_bias][0] if scale is not None else None,
                  mask_relation=LagRelation(0, 0), causal=mask.causal, segments=segments, valid_row=valid_row,
                  softmax_scale=float(softmax_scale))
  return layout, q_info, k_info, tables
