"""Structured attention terms: what the positional hooks hand to every attention implementation, and how each one is
evaluated on a tile of (query, key) coordinates.

A relative encoding never builds a dense `[batch, heads, q_len, k_len]` array. It returns a small description — a
*term* — and the term type says how to evaluate itself on a `Tile` (the query and key positions of a block of
logits and where that block sits in the call):

* `values(tile)` — in XLA, `[batch, heads, tq, tk]` float32. The reference path asks for the whole call as one tile,
  the chunked path for one block at a time.
* `KernelTerm`s can also be evaluated *inside* the Pallas kernels from one `[heads, width]` float32 operand
  (`kernel_operand`): `kernel_values(row, q_pos, k_pos)` gives a [bq, bk] tile from the head's `[1, width]` row and
  the tile's positions, `kernel_grad` the gradient of that row. These are functions of positions only.

Term types:

* `RelativeTable` — a learned per-head table indexed by the lag `k_pos - q_pos` through a static, hashable
  `index_fn` (clipped lag, T5 log buckets, ...): T5, RPE, URPE's B and C. In-kernel on TPU: the tile's lag window
  turned into the tile by one strided lane rotation (see the class).
* `ClosedForm` — a formula of the positions with a few per-head parameters (ALiBi, KERPLE, FIRE): the
  parameters `[heads, P]` are the kernel operand; the formula is evaluated on the tile and its parameter gradient is
  the formula's own VJP, in-kernel. A new closed form is one `Formula` subclass.
* `LagFunction` — a `ClosedForm` of the lag alone (Sandwich, whose formula costs d̄/2 cosines). Every core asks each
  term `for_call(q_pos, k_pos)` once per call; a lag function answers with a `LagTable`: its values at every lag a
  call of runs can hold, served like a `RelativeTable` (the formula only on tiles whose lags fall outside).
* `RelationTable` — a per-head table read through a per-example relation that is *not* a function of positions (a
  graph's shortest-path-distance buckets, `[batch, q_len, k_len]` integers). XLA only.
* `DenseBias` — an already dense `[batch, heads, q_len, k_len]` bias (Graphormer's edge encoding). XLA only.
* `TokenCumulative` — a difference of per-token running sums, q_sum[i] − k_sum[j] (FoX's forget gate): data, not
  positions, so its operands are per token ([batch, heads, length], blocked like the queries and keys in the Pallas
  kernels), and in cached decoding the keys' sums are kept in the cache.
* `ContentTerm` — a term of the attention's content as well as its coordinates (CoPE's gated position counts): its
  tile values read the tile's queries and content logits (`Content`) and a per-query summary of the whole row.

Which term types an attention implementation serves is declared by the implementation (`zoo.attention.cores`);
`values(Tile.whole(...))` is the one place where structure turns into an `L × L` array.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

# `index_fn(lag)` maps integer lags `k_pos - q_pos` (any shape) to int32 table rows in [0, rows).
IndexFn = Callable[[jax.Array], jax.Array]


def lags(q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
  """`k_pos - q_pos` for every query/key pair: [batch, q_len], [batch, k_len] -> [batch, q_len, k_len]."""
  return k_pos[:, None, :].astype(jnp.int32) - q_pos[:, :, None].astype(jnp.int32)


@struct.dataclass
class Tile:
  """The coordinates of a [tq, tk] block of attention logits: the positions of its queries and keys, and the indices
  of those queries and keys in the attention call (where a relation matrix is read)."""

  q_pos: jax.Array  # [batch, tq] int
  k_pos: jax.Array  # [batch, tk] int
  q_index: jax.Array  # [tq] int32
  k_index: jax.Array  # [tk] int32

  @classmethod
  def whole(cls, q_pos: jax.Array, k_pos: jax.Array) -> Tile:
    """The tile covering a whole call."""
    return cls(q_pos, k_pos, jnp.arange(q_pos.shape[1]), jnp.arange(k_pos.shape[1]))


class Term:
  """Base of every structured term (see the module docstring)."""

  def values(self, tile: Tile) -> jax.Array:
    """[batch, heads, tq, tk] float32."""
    raise NotImplementedError

  def for_call(self, q_pos: jax.Array, k_pos: jax.Array) -> Term:
    """The term as one attention call with these positions ([batch, q_len], [batch, k_len]) evaluates it: itself,
    or a cheaper equal form prepared once per call (a `LagFunction` tabulates itself)."""
    del q_pos, k_pos
    return self


class KernelTerm(Term):
  """A term the Pallas kernels evaluate in-kernel: a function of positions with one `[heads, width]` operand.

  `static()` is the term without its arrays (hashable: it becomes part of the kernel's static layout)."""

  def kernel_operand(self) -> jax.Array:
    """[heads, n] float32: the head's row is all a kernel instance reads."""
    raise NotImplementedError

  def static(self, backend: str) -> KernelTerm:
    """The term without its arrays, as the `backend` ("tpu" / "gpu") kernels evaluate it."""
    raise NotImplementedError

  def kernel_values(self, row, q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
    """row: the head's [1, width] operand (a ref or an array); q_pos [bq, 1], k_pos [1, bk] -> [bq, bk] float32."""
    raise NotImplementedError

  def kernel_grad(self, g: jax.Array, row, q_pos: jax.Array, k_pos: jax.Array, width: int) -> jax.Array:
    """d(Σ g ⊙ kernel_values)/d row for g [bq, bk]: [1, width] float32."""
    raise NotImplementedError


def consecutive(q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
  """Whether a tile's positions q_pos [bq, 1], k_pos [1, bk] are runs (p0, p0 + 1, ...): then its lags are
  `k_pos[0] - q_pos[0] + j - i`, constant along diagonals (a Toeplitz tile). Scalar bool."""
  q_run = q_pos - lax.broadcasted_iota(jnp.int32, q_pos.shape, 0)
  k_run = k_pos - lax.broadcasted_iota(jnp.int32, k_pos.shape, 1)
  return (jnp.min(q_run) == jnp.max(q_run)) & (jnp.min(k_run) == jnp.max(k_run))


def window_width(bq: int, bk: int) -> int:
  """Lanes of a [bq, bk] tile's lag window: bq + bk − 1 lags, rounded up to whole 128-lane vregs."""
  return -(-(bq + bk - 1) // 128) * 128


def skew(window: jax.Array, bq: int, bk: int) -> jax.Array:
  """window [1, W] -> the Toeplitz tile [bq, bk] with tile[i, j] = window[j − i + bq − 1]: the window broadcast to
  every row and row i rotated left by bq − 1 − i, in one strided lane rotation."""
  from jax.experimental.pallas import tpu as pltpu  # noqa: PLC0415 — kernels only

  width = window.shape[1]
  rows = jnp.broadcast_to(window, (bq, width))
  return pltpu.roll(rows, width - (bq - 1), 1, stride=1, stride_axis=0)[:, :bk]


def unskew_sum(tile: jax.Array, width: int) -> jax.Array:
  """The adjoint of `skew`: tile [bq, bk] -> [1, width], out[m] = Σ over i, j with j − i + bq − 1 = m of tile[i, j].

  Row i must move right by bq − 1 − i, a stride Mosaic's rotation cannot take (it takes non-negative strides below a
  vreg's width); so the rows are first reversed — a [bq, bq] exchange-matrix product on the MXU, exact in float32 —
  after which row i moves right by i."""
  from jax.experimental.pallas import tpu as pltpu  # noqa: PLC0415 — kernels only

  bq, bk = tile.shape
  exchange = (lax.broadcasted_iota(jnp.int32, (bq, bq), 0) + lax.broadcasted_iota(jnp.int32, (bq, bq), 1) == bq - 1)
  reversed_rows = jnp.dot(exchange.astype(jnp.float32), tile, precision=lax.Precision.HIGHEST,
                          preferred_element_type=jnp.float32)
  padded = jnp.concatenate([reversed_rows, jnp.zeros((bq, width - bk), jnp.float32)], axis=1)
  return jnp.sum(pltpu.roll(padded, 0, 1, stride=1, stride_axis=0), axis=0, keepdims=True)


@struct.dataclass
class RelativeTable(KernelTerm):
  """value[b, h, i, j] = table[h, index_fn(k_pos[b, j] - q_pos[b, i])].

  In-kernel lookup. Mosaic has no general vector gather and the head's table row sits in SMEM (scalar reads), so a
  lookup builds vectors by selects. On TPU (`lookup="window"`), a tile whose positions are runs — the usual case —
  holds only bq + bk − 1 distinct lags, constant along its diagonals: the kernel reads that lag window ([1, W], one
  select per table row it touches, on one or two vregs) and turns it into the [bq, bk] tile with one strided lane
  rotation (`skew`); the gradient is the adjoint (`unskew_sum`, then the window's rows summed into the table's). Any
  other tile (packed-sequence boundaries, arbitrary positions) and the GPU kernels (`lookup="select"`) use the
  general form: one select over the whole tile per table row that occurs in it (`min(rows) .. max(rows)`)."""

  table: jax.Array  # [heads, rows]
  index_fn: IndexFn = struct.field(pytree_node=False)
  lookup: str = struct.field(pytree_node=False, default="select")  # "window" (TPU kernels) | "select"

  def values(self, tile: Tile) -> jax.Array:
    rows = self.index_fn(lags(tile.q_pos, tile.k_pos))  # [batch, tq, tk]
    return jnp.moveaxis(self.table[:, rows], 0, 1).astype(jnp.float32)

  def kernel_operand(self) -> jax.Array:
    return self.table

  def static(self, backend: str) -> RelativeTable:
    return self.replace(table=None, lookup="window" if backend == "tpu" else "select")

  def windowed(self, block_k: int) -> bool:
    """Statically: whether tiles of `block_k` keys may take the window path (keys fill whole vregs)."""
    return self.lookup == "window" and block_k % 128 == 0

  def _window_rows(self, q_pos, k_pos) -> jax.Array:
    """[1, W] int32: the table rows of the lag window k_pos[0] − q_pos[0] − (bq − 1) + m, m = 0 .. W − 1."""
    bq, bk = q_pos.shape[0], k_pos.shape[1]
    first_lag = jnp.min(k_pos) - jnp.min(q_pos) - (bq - 1)
    return self.index_fn(first_lag + lax.broadcasted_iota(jnp.int32, (1, window_width(bq, bk)), 1))

  def kernel_values(self, row, q_pos, k_pos):
    general = lambda: _select_rows(row, self.index_fn(k_pos - q_pos))
    if not self.windowed(k_pos.shape[1]):
      return general()
    windowed = lambda: skew(_select_rows(row, self._window_rows(q_pos, k_pos)), q_pos.shape[0], k_pos.shape[1])
    return lax.cond(consecutive(q_pos, k_pos), windowed, general)

  def kernel_grad(self, g, row, q_pos, k_pos, width):
    del row
    general = lambda: _sum_into_rows(self.index_fn(k_pos - q_pos), g, width)
    if not self.windowed(k_pos.shape[1]):
      return general()
    windowed = lambda: _sum_into_rows(self._window_rows(q_pos, k_pos),
                                      unskew_sum(g, window_width(q_pos.shape[0], k_pos.shape[1])), width)
    return lax.cond(consecutive(q_pos, k_pos), windowed, general)


def _select_rows(row, rows: jax.Array) -> jax.Array:
  """rows (int32, any 2-D shape) -> row[0, rows] float32: one select per table row in min(rows) .. max(rows)."""
  pick = lambda r, acc: jnp.where(rows == r, row[0, r], acc)
  return lax.fori_loop(jnp.min(rows), jnp.max(rows) + 1, pick, jnp.zeros(rows.shape, jnp.float32))


def _sum_into_rows(rows: jax.Array, g: jax.Array, width: int) -> jax.Array:
  """[1, width]: out[r] = Σ g where rows == r (rows, g of one 2-D shape), one masked sum per row that occurs."""
  lane = lax.broadcasted_iota(jnp.int32, (1, width), 1)
  add = lambda r, acc: acc + jnp.where(lane == r, jnp.sum(jnp.where(rows == r, g, 0.0), keepdims=True), 0.0)
  return lax.fori_loop(jnp.min(rows), jnp.max(rows) + 1, add, jnp.zeros((1, width), jnp.float32))


@dataclasses.dataclass(frozen=True)
class Formula:
  """A closed form `f(θ, q_pos, k_pos)` of the positions with `num_params` per-head parameters θ.

  `__call__` must broadcast: the XLA path passes θ_p as [1, heads, 1, 1] arrays with positions [batch, 1, tq, 1] /
  [batch, 1, 1, tk]; the kernels pass θ_p as scalars with positions [bq, 1] / [1, bk]. Positions arrive as float32.
  Subclasses are frozen dataclasses (hashable, static under jit)."""

  num_params: ClassVar[int] = 1

  def __call__(self, theta: Sequence[jax.Array], q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
    raise NotImplementedError


@struct.dataclass
class ClosedForm(KernelTerm):
  """value[b, h, i, j] = formula(params[h], q_pos[b, i], k_pos[b, j]): a formula with per-head parameters."""

  params: jax.Array  # [heads, formula.num_params]
  formula: Formula = struct.field(pytree_node=False)

  def values(self, tile: Tile) -> jax.Array:
    theta = [self.params[None, :, p, None, None].astype(jnp.float32) for p in range(self.formula.num_params)]
    q_pos = tile.q_pos[:, None, :, None].astype(jnp.float32)
    k_pos = tile.k_pos[:, None, None, :].astype(jnp.float32)
    out = self.formula(theta, q_pos, k_pos)
    return jnp.broadcast_to(out, (q_pos.shape[0], self.params.shape[0], q_pos.shape[2], k_pos.shape[3]))

  def kernel_operand(self) -> jax.Array:
    return self.params

  def static(self, backend: str) -> ClosedForm:
    del backend  # the same formula on every backend
    return self.replace(params=None)

  def _theta(self, row):
    return [row[0, p] for p in range(self.formula.num_params)]

  def kernel_values(self, row, q_pos, k_pos):
    out = self.formula(self._theta(row), q_pos.astype(jnp.float32), k_pos.astype(jnp.float32))
    return jnp.broadcast_to(out, (q_pos.shape[0], k_pos.shape[1])).astype(jnp.float32)

  def kernel_grad(self, g, row, q_pos, k_pos, width):
    q_pos, k_pos = q_pos.astype(jnp.float32), k_pos.astype(jnp.float32)
    tile = lambda theta: jnp.broadcast_to(self.formula(theta, q_pos, k_pos), g.shape)
    _, vjp = jax.vjp(tile, self._theta(row))
    (dtheta,) = vjp(g)
    lane = lax.broadcasted_iota(jnp.int32, (1, width), 1)
    grad = jnp.zeros((1, width), jnp.float32)
    for p, d in enumerate(dtheta):
      grad = jnp.where(lane == p, d, grad)
    return grad


@struct.dataclass
class LagFunction(ClosedForm):
  """A closed form of the lag `k_pos − q_pos` alone (Sandwich): as it stands, the formula per logit; `for_call`
  tabulates it over the lags a call can hold (`LagTable`), which every core then evaluates instead."""

  def for_call(self, q_pos: jax.Array, k_pos: jax.Array) -> LagTable:
    # Positions that are runs (one sequence, packed sequences, KV-cache slots) keep |lag| < reach.
    reach = max(q_pos.shape[1], k_pos.shape[1])
    theta = [self.params[:, p, None].astype(jnp.float32) for p in range(self.formula.num_params)]  # [heads, 1]
    lag_row = jnp.arange(1 - reach, reach, dtype=jnp.float32)[None]  # [1, 2·reach − 1]
    table = jnp.broadcast_to(self.formula(theta, jnp.zeros((1, 1), jnp.float32), lag_row),
                             (self.params.shape[0], lag_row.shape[1]))
    return LagTable(operand=jnp.concatenate([self.params.astype(jnp.float32), table], axis=1),
                    formula=self.formula, reach=reach)


@dataclasses.dataclass(frozen=True)
class TableRow:
  """The `LagTable` operand column of a lag: after the formula's parameters, lags −(reach − 1) .. reach − 1
  (clipped: a tile outside the table never reads it, see `LagTable`)."""

  offset: int  # the formula's parameter count
  reach: int

  def __call__(self, lag: jax.Array) -> jax.Array:
    return jnp.clip(lag, 1 - self.reach, self.reach - 1).astype(jnp.int32) + self.offset + self.reach - 1


@struct.dataclass
class LagTable(KernelTerm):
  """A `LagFunction` tabulated for one call: the operand [heads, P + 2·reach − 1] holds the formula's parameters and
  its values at every lag |lag| < reach, computed once (O(heads · length) formulas, not O(heads · length²)).

  A tile whose lags all lie within the table — every tile of a call whose positions are runs — reads it as a
  `RelativeTable` does (on TPU a lag window skewed into the tile; a table's gradient summed into its rows, which
  autodiff of `for_call` carries to the parameters); any other tile (positions with gaps: randomized positions,
  arbitrary ones) evaluates the formula from the parameters, so the values are the formula's on every tile."""

  operand: jax.Array  # [heads, formula.num_params + 2·reach − 1]
  formula: Formula = struct.field(pytree_node=False)
  reach: int = struct.field(pytree_node=False)
  lookup: str = struct.field(pytree_node=False, default="select")  # as `RelativeTable.lookup`

  def _table(self) -> RelativeTable:
    return RelativeTable(table=self.operand, index_fn=TableRow(self.formula.num_params, self.reach),
                         lookup=self.lookup)

  def _closed_form(self) -> ClosedForm:
    return ClosedForm(params=self.operand, formula=self.formula)  # reads the first num_params columns only

  def _in_table(self, lag: jax.Array) -> jax.Array:
    return jnp.max(jnp.abs(lag)) < self.reach

  def values(self, tile: Tile) -> jax.Array:
    return lax.cond(self._in_table(lags(tile.q_pos, tile.k_pos)), self._table().values, self._closed_form().values,
                    tile)

  def kernel_operand(self) -> jax.Array:
    return self.operand

  def static(self, backend: str) -> LagTable:
    return self.replace(operand=None, lookup="window" if backend == "tpu" else "select")

  def kernel_values(self, row, q_pos, k_pos):
    return lax.cond(self._in_table(k_pos - q_pos), lambda: self._table().kernel_values(row, q_pos, k_pos),
                    lambda: self._closed_form().kernel_values(row, q_pos, k_pos))

  def kernel_grad(self, g, row, q_pos, k_pos, width):
    return lax.cond(self._in_table(k_pos - q_pos), lambda: self._table().kernel_grad(g, row, q_pos, k_pos, width),
                    lambda: self._closed_form().kernel_grad(g, row, q_pos, k_pos, width))


def for_call(bias: Sequence[Term], scale: Term | None, q_pos: jax.Array,
             k_pos: jax.Array) -> tuple[tuple[Term, ...], Term | None]:
  """A call's bias terms and scale as the call at these positions evaluates them (`Term.for_call`)."""
  return tuple(t.for_call(q_pos, k_pos) for t in bias), None if scale is None else scale.for_call(q_pos, k_pos)


@struct.dataclass
class RelationTable(Term):
  """value[b, h, i, j] = table[h, relation[b, i, j]]: a table read through a per-example relation matrix."""

  table: jax.Array  # [heads, rows]
  relation: jax.Array  # [batch, q_len, k_len] int32 table rows

  def values(self, tile: Tile) -> jax.Array:
    rows = self.relation[:, tile.q_index][:, :, tile.k_index]  # [batch, tq, tk]
    return jnp.moveaxis(self.table[:, rows], 0, 1).astype(jnp.float32)


@struct.dataclass
class DenseBias(Term):
  """A bias computed densely by the model: value[b, h, i, j]."""

  value: jax.Array  # [batch, heads, q_len, k_len]

  def values(self, tile: Tile) -> jax.Array:
    return self.value[:, :, tile.q_index][:, :, :, tile.k_index].astype(jnp.float32)


@struct.dataclass
class TokenCumulative(Term):
  """value[b, h, i, j] = q_sum[b, h, i] − k_sum[b, h, j]: a difference of per-token running sums, a function of the
  tokens, not of their positions (FoX's forget gate: Σ log f over the tokens after key j up to query i).

  Its operands are per token, O(heads · length), blocked along the sequence like the queries and keys: in the Pallas
  kernels a tile reads its queries' sums as a [bq, 1] column and its keys' as a [1, bk] row (`token_values`), and the
  gradient of Σ g ⊙ tile is the row sums of g for the queries and minus its column sums for the keys
  (`token_grads`). Masking is the mask's: a key after the query or in another segment gets a value, never a weight.

  In cached decoding the sums of the cached keys are the cache (`KVCache.sums`), and a call's sums, which start from 0,
  continue from the last cached one (`KVCache.append`)."""

  q_sum: jax.Array  # [batch, heads, q_len] float32
  k_sum: jax.Array  # [batch, heads, k_len] float32

  def values(self, tile: Tile) -> jax.Array:
    q_sum, k_sum = self.q_sum[:, :, tile.q_index], self.k_sum[:, :, tile.k_index]
    return (q_sum[:, :, :, None] - k_sum[:, :, None, :]).astype(jnp.float32)

  @staticmethod
  def token_values(q_sum: jax.Array, k_sum: jax.Array) -> jax.Array:
    """q_sum [bq, 1], k_sum [1, bk] -> [bq, bk] float32."""
    return q_sum - k_sum

  @staticmethod
  def token_grads(g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The gradients of Σ g ⊙ token_values for g [bq, bk]: ([bq, 1] for q_sum, [1, bk] for k_sum)."""
    return jnp.sum(g, axis=1, keepdims=True), -jnp.sum(g, axis=0, keepdims=True)


@struct.dataclass
class Content:
  """What a `ContentTerm` reads on a tile besides its coordinates."""

  q: jax.Array  # [batch, tq, heads, head_dim]: the queries as the attention core received them
  logits: jax.Array  # [batch, heads, tq, tk] float32: q·k · softmax_scale, before any term
  allowed: jax.Array  # [batch, 1, tq, tk] bool: the attention mask
  # The factor in `logits`: 1/√head_dim, or another where the model sets a temperature or unscaled logits.
  softmax_scale: float = struct.field(pytree_node=False)

  def scaled_dot_products(self) -> jax.Array:
    """q·k/√head_dim whatever the model's softmax scale: [batch, heads, tq, tk] float32."""
    factor = self.q.shape[-1] ** -0.5 / self.softmax_scale
    return self.logits if factor == 1.0 else self.logits * factor


class ContentTerm(Term):
  """A term whose values depend on the attention's content, and on a whole row of keys at once.

  Rows are reduced to an additive per-query summary: a core first sums `summary(tile, content)` over every key block
  of the row (`total`), then evaluates `values_in_row(tile, content, total, before)` block by block, walking keys in
  call order, with `before` the sum over the blocks before this one. Evaluated on one tile covering the whole row
  (the reference), `total` is that tile's summary and `before` is 0."""

  def summary(self, tile: Tile, content: Content) -> jax.Array:
    """[batch, heads, tq, n] float32, additive over key blocks."""
    raise NotImplementedError

  def values_in_row(self, tile: Tile, content: Content, total: jax.Array, before: jax.Array | float) -> jax.Array:
    """[batch, heads, tq, tk] float32."""
    raise NotImplementedError

  def values(self, tile: Tile) -> jax.Array:
    raise TypeError(f"a {type(self).__name__} reads the attention's content: evaluate it with `dense_sum(..., content)` "
                    f"or `values_in_row`")


def dense_sum(terms: Sequence[Term], tile: Tile, content: Content | None = None) -> jax.Array | float:
  """The sum of `terms` on `tile` ([batch, heads, tq, tk] float32), or 0.0 if none; `content` is the tile's content,
  needed by `ContentTerm`s, whose rows the tile must cover whole."""
  total: jax.Array | float = 0.0
  for term in terms:
    if isinstance(term, ContentTerm):
      total = total + term.values_in_row(tile, content, term.summary(tile, content), 0.0)
    else:
      total = total + term.values(tile)
  return total
