"""Structured terms and masks as kernel operands: the static `Layout` of a call and its small arrays.

The kernels never see a dense `[batch, heads, q_len, k_len]` array. A call is described by
* a static `Layout` (hashable, so it can be a `custom_vjp` non-differentiable argument and a kernel closure): the
  terms without their arrays (`KernelTerm.static(backend)`; each term type evaluates itself on a tile, see
  `zoo.attention.bias`), which mask rules apply;
* two small integer arrays: `q_info [batch, q_len, q_cols]` (per query: position, segment id) and
  `k_info [batch, k_rows, k_len]` (per key: position, segment id, validity). Queries run down the sublanes and keys
  along the lanes, so a tile's `q_info[:, c:c+1] [bq, 1]` and `k_info[r:r+1, :] [1, bk]` broadcast to [bq, bk]
  without relayouts (the layout JAX's TPU flash kernel uses for segment ids). Column / row 0 are the positions every
  term and the causal rule read;
* one float32 operand per term, `[heads, width]` (`KernelTerm.kernel_operand`: a table, a formula's parameters),
  zero-padded to a power-of-two width ≥ 128 so it is a legal block on TPU (lanes) and GPU (Triton wants powers of
  two). A kernel instance gets its head's row only (a `[1, width]` block, in SMEM on TPU), so the operand size never
  limits the head count;
* per-token running sums, when the bias has `TokenCumulative` terms: their sum (q_sum_i − k_sum_j summed over terms
  is (Σ q_sum)_i − (Σ k_sum)_j), as `q_sum [batch, heads, 1, q_len]` and `k_sum [batch, heads, 1, k_len]` float32,
  blocked along the sequence like lse ([1, block] lane rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from zoo.attention.bias import KernelTerm, Term, TokenCumulative, for_call
from zoo.attention.masks import AttentionMask


@dataclasses.dataclass(frozen=True)
class Layout:
  """The static description of one attention call (see the module docstring)."""

  bias: tuple[KernelTerm, ...]  # static terms (no arrays)
  scale: KernelTerm | None  # URPE's C, applied after the softmax
  causal: bool
  window: int | None  # sliding window: keys less than `window` positions behind the query
  segments: tuple[int, int] | None  # (q_info column, k_info row) of the segment ids
  valid_row: int | None  # k_info row of key validity (1 valid, 0 padding)
  softmax_scale: float
  cumulative: bool = False  # the bias has `TokenCumulative` terms: the kernels read per-token running sums

  @property
  def terms(self) -> tuple[KernelTerm, ...]:
    """Bias terms then the scale: the order of the table operands."""
    return self.bias + (() if self.scale is None else (self.scale,))

  def allowed(self, q_info: jax.Array, k_info: jax.Array) -> jax.Array:
    """[bq, bk] bool: the mask rules of `AttentionMask.dense`, on one tile."""
    shape = (q_info.shape[0], k_info.shape[1])
    allowed = jnp.ones(shape, bool)
    if self.causal:
      allowed &= k_positions(k_info) <= q_positions(q_info)
    if self.window is not None:
      allowed &= k_positions(k_info) > q_positions(q_info) - self.window
    if self.segments is not None:
      col, row = self.segments
      allowed &= q_info[:, col:col + 1] == k_info[row:row + 1, :]
    if self.valid_row is not None:
      allowed &= k_info[self.valid_row:self.valid_row + 1, :] != 0
    return allowed

  def may_attend(self, q_info: jax.Array, k_info: jax.Array):
    """False only where no key of the tile can be seen (causal: every key position after every query position;
    window: every key position `window` or more behind every query position), so the kernel skips the tile; decided
    from positions, which makes it right for packing and KV-cache offsets too."""
    may = True
    if self.causal:
      may = jnp.min(k_positions(k_info)) <= jnp.max(q_positions(q_info))
    if self.window is not None:
      may = jnp.logical_and(may, jnp.max(k_positions(k_info)) > jnp.min(q_positions(q_info)) - self.window)
    return may


def table_width(rows: int) -> int:
  """A power of two ≥ 128 and ≥ rows (a legal TPU lane block and Triton block)."""
  return max(128, pl.next_power_of_2(rows))


def _pad_to(x: jax.Array, axis: int, size: int, mode: str = "constant") -> jax.Array:
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, pad, mode=mode)


def q_positions(q_info: jax.Array) -> jax.Array:
  """[bq, q_cols] -> the queries' positions [bq, 1]."""
  return q_info[:, 0:1]


def k_positions(k_info: jax.Array) -> jax.Array:
  """[k_rows, bk] -> the keys' positions [1, bk]."""
  return k_info[0:1, :]


def running_sums(bias: Sequence[Term], q_len: int, k_len: int) -> tuple[jax.Array, ...]:
  """The `TokenCumulative` terms' summed running sums as kernel operands, (q_sum [batch, heads, 1, q_len], k_sum
  [batch, heads, 1, k_len]) float32 zero-padded to the padded lengths, or () if there are none."""
  cumulative = [t for t in bias if isinstance(t, TokenCumulative)]
  if not cumulative:
    return ()
  total = lambda sums, length: _pad_to(sum(s.astype(jnp.float32) for s in sums), 2, length)[:, :, None]
  return total([t.q_sum for t in cumulative], q_len), total([t.k_sum for t in cumulative], k_len)


def prepare(mask: AttentionMask, bias: Sequence[Term], scale: KernelTerm | None, softmax_scale: float,
            q_len: int, k_len: int, backend: str):
  """Turns the structured inputs into (layout, q_info [batch, q_len, q_cols], k_info [batch, k_rows, k_len],
  operands [heads, width] float32 per `KernelTerm`, the running sums of the `TokenCumulative` terms (see
  `running_sums`)), padded to `q_len` / `k_len` (padded keys are invalid)."""
  bias, scale = for_call(bias, scale, mask.q_pos, mask.k_pos)
  sums = running_sums(bias, q_len, k_len)
  bias = tuple(t for t in bias if not isinstance(t, TokenCumulative))
  terms = (*bias, *([] if scale is None else [scale]))
  operands = tuple(_pad_to(t.kernel_operand().astype(jnp.float32), 1, table_width(t.kernel_operand().shape[1]))
                   for t in terms)
  q_cols, k_rows = [mask.q_pos], [mask.k_pos]
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
  # Padded queries and keys repeat the last real position (padded keys are invalid, padded query rows dropped): a
  # padded tile of a call whose positions are runs then holds the call's lags only, so a `LagTable` reads its table.
  q_info = _pad_to(jnp.stack([c.astype(jnp.int32) for c in q_cols], axis=-1), 1, q_len)
  q_info = q_info.at[:, :, 0].set(_pad_to(mask.q_pos.astype(jnp.int32), 1, q_len, mode="edge"))
  k_info = _pad_to(jnp.stack([r.astype(jnp.int32) for r in k_rows], axis=1), 2, k_len)
  k_info = k_info.at[:, 0, :].set(_pad_to(mask.k_pos.astype(jnp.int32), 1, k_len, mode="edge"))
  # Power-of-two column / row counts: legal Triton blocks (TPU blocks take the full dimension anyway).
  q_info = _pad_to(q_info, 2, pl.next_power_of_2(q_info.shape[2]))
  k_info = _pad_to(k_info, 1, pl.next_power_of_2(k_info.shape[1]))
  layout = Layout(bias=tuple(t.static(backend) for t in bias), scale=None if scale is None else scale.static(backend),
                  causal=mask.causal, window=mask.window, segments=segments, valid_row=valid_row,
                  softmax_scale=float(softmax_scale), cumulative=bool(sums))
  return layout, q_info, k_info, operands, sums
