"""Flash-attention kernels: the math of one [bq, bk] tile, and two drivers that walk the tiles.

Tile math (shared, arrays in and out, so every driver computes the same numbers):
* `forward_update` — one online-softmax step with two accumulators: the denominator `l += Σ_j p_ij` without C, the
  numerator `acc += (p ⊙ C) · v` with it; `forward_finish` divides (0 for a query that sees no key) and returns the
  log-sum-exp the backward pass recomputes probabilities from.
* `backward_tile` — with P = softmax(S), O = (P ⊙ C) V, dO given and Δ_i = Σ_d dO_id O_id:
  d(P⊙C) = dO Vᵀ, dP = d(P⊙C) ⊙ C, dS = P ⊙ (dP − Δ) (Δ = rowsum(dP ⊙ P) still, because O already carries C),
  dC = d(P⊙C) ⊙ P, dV = (P ⊙ C)ᵀ dO, dQ = dS K · scale, dK = dSᵀ Q · scale; the bias tables get dS, C's table dC,
  the running sums of `TokenCumulative` terms dS's row sums (queries) and minus its column sums (keys).

Drivers:
* "tpu" (Mosaic) — the grid walks (batch, heads, outer blocks, inner blocks); the innermost grid axis is the
  reduction, accumulators live in VMEM scratch and outputs are written at its last step (JAX's TPU flash layout). Only
  [bq, D] / [bk, D] blocks are ever in VMEM, so any length fits. The head's table rows sit in SMEM (scalar reads).
* "gpu" (Triton) — the grid walks (batch, heads, outer blocks) and a `fori_loop` inside the kernel walks the inner
  blocks of full-length refs (the layout of JAX's GPU `mha`), since Triton programs cannot carry scratch across grid
  steps. Not run on GPU hardware here; on CPU it runs in interpret mode like the TPU driver.

Both drivers skip a tile in which no key is visible (`Layout.may_attend`: causal, sliding window), forward and
backward: a Mosaic grid step does nothing under `pl.when`, a Triton loop passes its carry on through a `lax.cond`.

Backward = two kernels, as in FlashAttention-2: one per key block (dK, dV and the table gradients, summed over query
blocks) and one per query block (dQ, summed over key blocks); each recomputes P from the saved log-sum-exp.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

from zoo.attention.bias import TokenCumulative
from zoo.attention.pallas.terms import Layout, k_positions, q_positions

NEG_INF = -1e30  # masked logits (masked probabilities are zeroed explicitly, so only "far below" matters)
BACKENDS = ("tpu", "gpu")
NT = (((1,), (1,)), ((), ()))  # contract the last dims: a [m, d] · b [n, d] -> [m, n]
TN = (((0,), (0,)), ((), ()))  # contract the first dims: a [m, n] · b [m, d] -> [n, d]


def _dot(a, b, dims=(((1,), (0,)), ((), ()))):
  return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def scores(layout: Layout, q, k, q_info, k_info, tables, sums=()):
  """q [bq, D], k [bk, D] -> logits [bq, bk] float32 (masked entries NEG_INF) and allowed [bq, bk] bool. sums: the
  tile's running sums (q [bq, 1], k [1, bk]) when `layout.cumulative`, else ()."""
  s = _dot(q, k, NT) * layout.softmax_scale
  q_pos, k_pos = q_positions(q_info), k_positions(k_info)
  for term, table in zip(layout.bias, tables):
    s = s + term.kernel_values(table, q_pos, k_pos)
  if sums:
    s = s + TokenCumulative.token_values(*sums)
  allowed = layout.allowed(q_info, k_info)
  return jnp.where(allowed, s, NEG_INF), allowed


def scale_tile(layout: Layout, q_info, k_info, tables):
  """URPE's C on the tile, [bq, bk] float32 (its table is the last one)."""
  return layout.scale.kernel_values(tables[-1], q_positions(q_info), k_positions(k_info))


def forward_update(layout: Layout, carry, q, k, v, q_info, k_info, tables, sums):
  """One key block of the online softmax. carry: m, l [bq, 1], acc [bq, Dv] float32."""
  m, l, acc = carry
  s, allowed = scores(layout, q, k, q_info, k_info, tables, sums)
  m_new = jnp.maximum(m, jnp.max(s, axis=1, keepdims=True))
  p = jnp.where(allowed, jnp.exp(s - m_new), 0.0)
  alpha = jnp.exp(m - m_new)
  l = alpha * l + jnp.sum(p, axis=1, keepdims=True)
  if layout.scale is not None:
    p = p * scale_tile(layout, q_info, k_info, tables)
  return m_new, l, alpha * acc + _dot(p.astype(v.dtype), v)


def forward_init(bq: int, dv: int):
  return (jnp.full((bq, 1), NEG_INF, jnp.float32), jnp.zeros((bq, 1), jnp.float32), jnp.zeros((bq, dv), jnp.float32))


def forward_finish(m, l, acc):
  """-> out [bq, Dv] float32 (0 where no key is visible), lse [bq, 1] (0 there; such rows have P = 0 anyway)."""
  seen = l > 0
  safe_l = jnp.where(seen, l, 1.0)
  return jnp.where(seen, acc / safe_l, 0.0), jnp.where(seen, m + jnp.log(safe_l), 0.0)


def backward_tile(layout: Layout, q, k, v, do, lse, delta, q_info, k_info, tables, sums):
  """lse, delta: [1, bq] rows -> p ⊙ C [bq, bk], dS [bq, bk], and the gradient tile of each table term (in
  `layout.terms` order)."""
  s, allowed = scores(layout, q, k, q_info, k_info, tables, sums)
  lse, delta = _to_column(lse), _to_column(delta)
  p = jnp.where(allowed, jnp.exp(s - lse), 0.0)
  dpc = _dot(do, v, NT)  # d(P ⊙ C)
  if layout.scale is None:
    pc, dp = p, dpc
  else:
    c = scale_tile(layout, q_info, k_info, tables)
    pc, dp = p * c, dpc * c
  ds = p * (dp - delta)
  grads = [ds] * len(layout.bias) + ([dpc * p] if layout.scale is not None else [])
  return pc, ds, grads


def table_grads(layout: Layout, grads, q_info, k_info, tables, widths):
  """[1, width] gradient rows of every operand from its term's [bq, bk] gradient tile."""
  q_pos, k_pos = q_positions(q_info), k_positions(k_info)
  return [term.kernel_grad(g, table, q_pos, k_pos, w) for term, g, table, w in zip(layout.terms, grads, tables, widths)]


# ----------------------------------------------------------------------------------------------------------------
# Block specs. Arrays: q, do [B, H, L, D]; k, v [B, H_kv, L, D] (grouped-query attention: H_kv divides H, and the
# kernel instance of query head h reads kv head h // (H / H_kv) through its index map — no repeated copy);
# lse, delta [B, H, 1, Lq]; q_info [B, Lq, q_cols];
# k_info [B, k_rows, Lk]; tables [H, 1, width] (one row per kernel instance);
# table gradients [B, H, k_blocks, 1, width]; running sums (and their gradients) q_sum [B, H, 1, Lq], k_sum
# [B, H, 1, Lk], per-token scalars like lse.
# lse and delta are per-query scalars stored along lanes ([1, bq] blocks): a [.., Lq, 1] array would be padded to
# 128 lanes in TPU memory (128× its size). Kernels turn the row into the [bq, 1] column they need and back.
# ----------------------------------------------------------------------------------------------------------------
S = pl.squeezed


def _pick(grid_ids, axis):
  """The block index along grid axis `axis` (2 or 3) of a (b, h, ...) grid; None: one block covering everything."""
  return 0 if axis is None else grid_ids[axis - 2]


def _rows(block, dim, axis=None, groups=1):
  """A [B, heads, L, dim] array in [block, dim] blocks along L, walked by grid axis `axis`; with `groups` query heads
  per head of the array (keys and values in grouped-query attention), grid head h reads head h // groups."""
  return pl.BlockSpec((S, S, block, dim), lambda b, h, *ids: (b, h // groups, _pick(ids, axis), 0))


def _lanes(block, axis=None):
  """A [B, H, 1, L] array of per-query scalars in [1, block] blocks."""
  return pl.BlockSpec((S, S, 1, block), lambda b, h, *g: (b, h, 0, _pick(g, axis)))


def _to_row(column):
  """[n, 1] -> [1, n] through a [n, 128] transpose, which Mosaic lowers (a bare [n, 1] one it may not)."""
  return jnp.broadcast_to(column, (column.shape[0], 128)).T[:1, :]


def _to_column(row):
  """[1, n] -> [n, 1], the inverse of `_to_row`."""
  return jnp.broadcast_to(row, (128, row.shape[1])).T[:, :1]


def _q_info(block, cols, axis=None):
  return pl.BlockSpec((S, block, cols), lambda b, h, *g: (b, _pick(g, axis), 0))


def _k_info(rows, block, axis=None):
  return pl.BlockSpec((S, rows, block), lambda b, h, *g: (b, 0, _pick(g, axis)))


def _table_specs(tables, backend):
  """Each kernel instance gets its head's [1, width] row (tables are passed as [H, 1, width]: Mosaic's block rule
  holds for SMEM too), in SMEM on TPU, where the tile lookups read scalars."""
  memory = dict(memory_space=pltpu.SMEM) if backend == "tpu" else {}
  return [pl.BlockSpec((S, 1, t.shape[1]), lambda b, h, *_: (h, 0, 0), **memory) for t in tables]


def _split(layout, refs):
  """The refs after q, k, v, q_info, k_info -> (table refs, running-sum refs (q, k) or (), the rest)."""
  n = len(layout.terms)
  m = n + (2 if layout.cumulative else 0)
  return refs[:n], refs[n:m], refs[m:]


def _tile_sums(sum_refs, queries=slice(None), keys=slice(None)):
  """A tile's running sums from the (q_sum, k_sum) refs: queries' [bq, 1], keys' [1, bk]; () without them."""
  if not sum_refs:
    return ()
  q_ref, k_ref = sum_refs
  return _to_column(q_ref[:, queries]), k_ref[:, keys]


def _rows_of(tables):
  """[H, width] -> [H, 1, width], the shape `_table_specs` blocks."""
  return [t[:, None, :] for t in tables]


def _params(backend, grid_rank):
  if backend == "tpu":
    return pltpu.CompilerParams(dimension_semantics=("parallel",) * (grid_rank - 1) + ("arbitrary",))
  return pltriton.CompilerParams(num_warps=4, num_stages=2)


def _cost(matmuls: int, q, k, operands, out_shapes) -> pl.CostEstimate:
  """What a kernel costs, declared so XLA's cost analysis (and its roofline step-time estimate) counts it instead
  of treating the custom call as free: `matmuls` [Lq, D] x [D, Lk]-sized products per (batch, head) — every tile
  is computed, masked ones included — one exp per logit, and every operand and output read or written once."""
  batch, heads, q_len, d = q.shape
  logits = batch * heads * q_len * k.shape[2]
  nbytes = lambda a: a.size * jnp.dtype(a.dtype).itemsize
  return pl.CostEstimate(flops=2 * matmuls * logits * d, transcendentals=logits,
                         bytes_accessed=sum(nbytes(a) for a in (*operands, *out_shapes)))


def _when(condition):
  """`pl.when(condition)`, or run unconditionally when the condition is statically True."""
  return (lambda body: body()) if condition is True else pl.when(condition)


def _unless_skipped(layout: Layout, q_info, k_info, update, carry):
  """`update(carry)` for a tile with a visible key, `carry` as it is for one without (`Layout.may_attend`): how the
  Triton drivers' loops skip tiles, as `_when` skips grid steps of the Mosaic ones."""
  may = layout.may_attend(q_info, k_info)
  return update(carry) if may is True else lax.cond(may, update, lambda c: c, carry)


# ----------------------------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------------------------
def _forward_tpu_kernel(layout, q_ref, k_ref, v_ref, qi_ref, ki_ref, *refs):
  tables, sum_refs, (o_ref, lse_ref, m_sc, l_sc, acc_sc) = _split(layout, refs)
  kb = pl.program_id(3)

  @pl.when(kb == 0)
  def _init():
    m_sc[...], l_sc[...], acc_sc[...] = forward_init(*acc_sc.shape)

  q_info, k_info = qi_ref[...], ki_ref[...]

  @_when(layout.may_attend(q_info, k_info))
  def _step():
    carry = (m_sc[...], l_sc[...], acc_sc[...])
    m_sc[...], l_sc[...], acc_sc[...] = forward_update(layout, carry, q_ref[...], k_ref[...], v_ref[...],
                                                       q_info, k_info, tables, _tile_sums(sum_refs))

  @pl.when(kb == pl.num_programs(3) - 1)
  def _finish():
    out, lse = forward_finish(m_sc[...], l_sc[...], acc_sc[...])
    o_ref[...], lse_ref[...] = out.astype(o_ref.dtype), _to_row(lse)


def _forward_gpu_kernel(layout, bk, q_ref, k_ref, v_ref, qi_ref, ki_ref, *refs):
  tables, sum_refs, (o_ref, lse_ref) = _split(layout, refs)
  q, q_info = q_ref[...], qi_ref[...]

  def step(kb, carry):
    keys = pl.ds(kb * bk, bk)
    k_info = ki_ref[:, keys]
    update = lambda c: forward_update(layout, c, q, k_ref[keys, :], v_ref[keys, :], q_info, k_info, tables,
                                      _tile_sums(sum_refs, keys=keys))
    return _unless_skipped(layout, q_info, k_info, update, carry)

  carry = lax.fori_loop(0, k_ref.shape[0] // bk, step, forward_init(q.shape[0], v_ref.shape[-1]))
  out, lse = forward_finish(*carry)
  o_ref[...], lse_ref[...] = out.astype(o_ref.dtype), _to_row(lse)


def forward(layout: Layout, q, k, v, q_info, k_info, tables, sums, *, bq, bk, backend, interpret):
  """q [B, H, Lq, D], k / v [B, H_kv, Lk, D*] (lengths multiples of the blocks), sums () or (q_sum [B, H, 1, Lq],
  k_sum [B, H, 1, Lk]) -> out [B, H, Lq, Dv], lse [B, H, 1, Lq]."""
  batch, heads, q_len, _ = q.shape
  k_len, dv, groups = k.shape[2], v.shape[-1], heads // k.shape[1]
  out_shape = [jax.ShapeDtypeStruct((batch, heads, q_len, dv), v.dtype),
               jax.ShapeDtypeStruct((batch, heads, 1, q_len), jnp.float32)]
  q_cols, k_rows = q_info.shape[2], k_info.shape[1]
  if backend == "tpu":
    grid = (batch, heads, q_len // bq, k_len // bk)
    kernel = functools.partial(_forward_tpu_kernel, layout)
    in_specs = [_rows(bq, q.shape[-1], 2), _rows(bk, k.shape[-1], 3, groups), _rows(bk, dv, 3, groups),
                _q_info(bq, q_cols, 2), _k_info(k_rows, bk, 3)]
    scratch = [pltpu.VMEM((bq, 1), jnp.float32), pltpu.VMEM((bq, 1), jnp.float32), pltpu.VMEM((bq, dv), jnp.float32)]
    sum_specs = [_lanes(bq, 2), _lanes(bk, 3)]
  else:
    grid = (batch, heads, q_len // bq)
    kernel = functools.partial(_forward_gpu_kernel, layout, bk)
    in_specs = [_rows(bq, q.shape[-1], 2), _rows(k_len, k.shape[-1], groups=groups),
                _rows(k_len, dv, groups=groups), _q_info(bq, q_cols, 2), _k_info(k_rows, k_len)]
    scratch = []
    sum_specs = [_lanes(bq, 2), _lanes(k_len)]
  operands = (q, k, v, q_info, k_info, *_rows_of(tables), *sums)
  return pl.pallas_call(
      kernel, grid=grid, in_specs=in_specs + _table_specs(tables, backend) + sum_specs[:len(sums)],
      out_specs=[_rows(bq, dv, 2), _lanes(bq, 2)], out_shape=out_shape, scratch_shapes=scratch,
      compiler_params=_params(backend, len(grid)), interpret=interpret, name="zoo_flash_forward",
      cost_estimate=_cost(2, q, k, operands, out_shape),  # q·kᵀ, p·v
  )(*operands)


# ----------------------------------------------------------------------------------------------------------------
# Backward: dK, dV and table gradients per key block; dQ per query block.
# ----------------------------------------------------------------------------------------------------------------
def _dkv_step(layout, widths, q, k, v, do, lse, delta, q_info, k_info, tables, sums, dk, dv, dtables):
  """dtables: the table gradient rows, then (with running sums) the keys' sums' gradient [1, bk]."""
  pc, ds, grads = backward_tile(layout, q, k, v, do, lse, delta, q_info, k_info, tables, sums)
  dv = dv + _dot(pc.astype(do.dtype), do, TN)
  dk = dk + _dot(ds.astype(q.dtype), q, TN) * layout.softmax_scale
  new = table_grads(layout, grads, q_info, k_info, tables, widths) + ([TokenCumulative.token_grads(ds)[1]]
                                                                       if sums else [])
  return dk, dv, [a + g for a, g in zip(dtables, new)]


def _dq_step(layout, q, k, v, do, lse, delta, q_info, k_info, tables, sums, dq, dq_sum=None):
  """dq_sum: the queries' sums' gradient [bq, 1] with running sums, else None."""
  _, ds, _ = backward_tile(layout, q, k, v, do, lse, delta, q_info, k_info, tables, sums)
  if sums:
    dq_sum = dq_sum + TokenCumulative.token_grads(ds)[0]
  return dq + _dot(ds.astype(k.dtype), k) * layout.softmax_scale, dq_sum


def _dkv_tpu_kernel(layout, widths, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, qi_ref, ki_ref, *refs):
  tables, sum_refs, refs = _split(layout, refs)
  # Outputs dK, dV, the table gradients (then the keys' sums' gradient), scratch dK, dV.
  (dk_ref, dv_ref), dtable_refs, (dk_sc, dv_sc) = refs[:2], refs[2:-2], refs[-2:]
  qb = pl.program_id(3)

  @pl.when(qb == 0)
  def _init():
    dk_sc[...], dv_sc[...] = jnp.zeros(dk_sc.shape, jnp.float32), jnp.zeros(dv_sc.shape, jnp.float32)
    for ref in dtable_refs:
      ref[...] = jnp.zeros(ref.shape, jnp.float32)

  q_info, k_info = qi_ref[...], ki_ref[...]

  @_when(layout.may_attend(q_info, k_info))
  def _step():
    dk, dv, dtables = _dkv_step(layout, widths, q_ref[...], k_ref[...], v_ref[...], do_ref[...], lse_ref[...],
                                delta_ref[...], q_info, k_info, tables, _tile_sums(sum_refs), dk_sc[...],
                                dv_sc[...], [ref[...] for ref in dtable_refs])
    dk_sc[...], dv_sc[...] = dk, dv
    for ref, value in zip(dtable_refs, dtables):
      ref[...] = value

  @pl.when(qb == pl.num_programs(3) - 1)
  def _finish():
    dk_ref[...], dv_ref[...] = dk_sc[...].astype(dk_ref.dtype), dv_sc[...].astype(dv_ref.dtype)


def _dq_tpu_kernel(layout, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, qi_ref, ki_ref, *refs):
  tables, sum_refs, refs = _split(layout, refs)
  # Outputs dQ (then the queries' sums' gradient), scratch dQ (then that gradient as a column).
  n = 2 if layout.cumulative else 1
  out_refs, scratch = refs[:n], refs[n:]
  kb = pl.program_id(3)

  @pl.when(kb == 0)
  def _init():
    for ref in scratch:
      ref[...] = jnp.zeros(ref.shape, jnp.float32)

  q_info, k_info = qi_ref[...], ki_ref[...]

  @_when(layout.may_attend(q_info, k_info))
  def _step():
    dq, dq_sum = _dq_step(layout, q_ref[...], k_ref[...], v_ref[...], do_ref[...], lse_ref[...], delta_ref[...],
                          q_info, k_info, tables, _tile_sums(sum_refs), *[ref[...] for ref in scratch])
    for ref, value in zip(scratch, (dq, dq_sum)):
      ref[...] = value

  @pl.when(kb == pl.num_programs(3) - 1)
  def _finish():
    out_refs[0][...] = scratch[0][...].astype(out_refs[0].dtype)
    if layout.cumulative:
      out_refs[1][...] = _to_row(scratch[1][...])


def _dkv_gpu_kernel(layout, widths, bq, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, qi_ref, ki_ref, *refs):
  tables, sum_refs, refs = _split(layout, refs)
  (dk_ref, dv_ref), dtable_refs = refs[:2], refs[2:]
  k, v, k_info = k_ref[...], v_ref[...], ki_ref[...]

  def step(qb, carry):
    rows = pl.ds(qb * bq, bq)
    q_info = qi_ref[rows, :]
    update = lambda c: _dkv_step(layout, widths, q_ref[rows, :], k, v, do_ref[rows, :], lse_ref[:, rows],
                                 delta_ref[:, rows], q_info, k_info, tables, _tile_sums(sum_refs, queries=rows), *c)
    return _unless_skipped(layout, q_info, k_info, update, carry)

  init = (jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32),
          [jnp.zeros(ref.shape, jnp.float32) for ref in dtable_refs])
  dk, dv, dtables = lax.fori_loop(0, q_ref.shape[0] // bq, step, init)
  dk_ref[...], dv_ref[...] = dk.astype(dk_ref.dtype), dv.astype(dv_ref.dtype)
  for ref, value in zip(dtable_refs, dtables):
    ref[...] = value


def _dq_gpu_kernel(layout, bk, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, qi_ref, ki_ref, *refs):
  tables, sum_refs, (dq_ref, *dsum_refs) = _split(layout, refs)
  q, do, lse, delta, q_info = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...], qi_ref[...]

  def step(kb, carry):
    keys = pl.ds(kb * bk, bk)
    k_info = ki_ref[:, keys]
    update = lambda c: _dq_step(layout, q, k_ref[keys, :], v_ref[keys, :], do, lse, delta, q_info, k_info, tables,
                                _tile_sums(sum_refs, keys=keys), *c)
    return _unless_skipped(layout, q_info, k_info, update, carry)

  init = (jnp.zeros(q.shape, jnp.float32), jnp.zeros((q.shape[0], 1), jnp.float32) if sum_refs else None)
  dq, dq_sum = lax.fori_loop(0, k_ref.shape[0] // bk, step, init)
  dq_ref[...] = dq.astype(dq_ref.dtype)
  for ref in dsum_refs:
    ref[...] = _to_row(dq_sum)


def backward(layout: Layout, q, k, v, q_info, k_info, tables, sums, out, lse, do, *, bq, bk, backend, interpret):
  """-> dq, dk, dv (shapes of q, k, v), the [heads, width] gradient of every table and those of the running sums
  (shapes of `sums`).

  The dK / dV kernel runs per query head (its table gradients are per query head too); with grouped-query
  attention its float32 dK / dV [B, H, Lk, D] are summed over each kv head's group of query heads afterwards."""
  batch, heads, q_len, d = q.shape
  k_len, dv_dim, groups = k.shape[2], v.shape[-1], heads // k.shape[1]
  delta = jnp.sum(do.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)[:, :, None]  # [B, H, 1, Lq]
  widths = tuple(t.shape[1] for t in tables)
  q_cols, k_rows = q_info.shape[2], k_info.shape[1]
  operands = (q, k, v, do, lse, delta, q_info, k_info, *_rows_of(tables), *sums)
  nkb = k_len // bk
  per_head = lambda x: jax.ShapeDtypeStruct((batch, heads, *x.shape[2:]), x.dtype if groups == 1 else jnp.float32)
  sum_shapes = [jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in sums]  # (q_sum, k_sum) or ()
  dkv_shapes = [per_head(k), per_head(v),
                *[jax.ShapeDtypeStruct((batch, heads, nkb, 1, w), jnp.float32) for w in widths], *sum_shapes[1:]]
  dtable_specs = [pl.BlockSpec((S, S, S, 1, w), lambda b, h, i, *_: (b, h, i, 0, 0)) for w in widths]
  if backend == "tpu":
    # dK / dV: grid (b, h, key block, query block); dQ: grid (b, h, query block, key block).
    inner = 3  # the reduction walks grid axis 3
    dkv_grid, dq_grid = (batch, heads, nkb, q_len // bq), (batch, heads, q_len // bq, nkb)
    dkv_kernel = functools.partial(_dkv_tpu_kernel, layout, widths)
    dq_kernel = functools.partial(_dq_tpu_kernel, layout)
    dkv_scratch = [pltpu.VMEM((bk, d), jnp.float32), pltpu.VMEM((bk, dv_dim), jnp.float32)]
    dq_scratch = [pltpu.VMEM((bq, d), jnp.float32)] + ([pltpu.VMEM((bq, 1), jnp.float32)] if sums else [])
    dkv_q, dq_k = bq, bk
  else:
    # One program per key block looping over all queries, one per query block looping over all keys.
    inner = None  # the reduction is a loop over one full-length block
    dkv_grid, dq_grid = (batch, heads, nkb), (batch, heads, q_len // bq)
    dkv_kernel = functools.partial(_dkv_gpu_kernel, layout, widths, bq)
    dq_kernel = functools.partial(_dq_gpu_kernel, layout, bk)
    dkv_scratch = dq_scratch = []
    dkv_q, dq_k = q_len, k_len
  per_query = lambda block, axis: [_rows(block, dv_dim, axis), _lanes(block, axis), _lanes(block, axis)]
  dkv_specs = [_rows(dkv_q, d, inner), _rows(bk, d, 2, groups), _rows(bk, dv_dim, 2, groups),
               *per_query(dkv_q, inner), _q_info(dkv_q, q_cols, inner), _k_info(k_rows, bk, 2)]
  dq_specs = [_rows(bq, d, 2), _rows(dq_k, d, inner, groups), _rows(dq_k, dv_dim, inner, groups), *per_query(bq, 2),
              _q_info(bq, q_cols, 2), _k_info(k_rows, dq_k, inner)]
  table_specs = _table_specs(tables, backend)
  # The running sums as each kernel reads them: the dK / dV kernel walks queries, the dQ kernel keys.
  dkv_sum_specs, dq_sum_specs = [_lanes(dkv_q, inner), _lanes(bk, 2)], [_lanes(bq, 2), _lanes(dq_k, inner)]
  dk, dv, *dtables = pl.pallas_call(
      dkv_kernel, grid=dkv_grid, in_specs=dkv_specs + table_specs + dkv_sum_specs[:len(sums)],
      out_specs=[_rows(bk, d, 2), _rows(bk, dv_dim, 2), *dtable_specs, *dkv_sum_specs[1:len(sums)]],
      out_shape=dkv_shapes,
      scratch_shapes=dkv_scratch, compiler_params=_params(backend, len(dkv_grid)), interpret=interpret,
      name="zoo_flash_dkv", cost_estimate=_cost(4, q, k, operands, dkv_shapes),  # q·kᵀ, dv, do·vᵀ, dk
  )(*operands)
  dq_shapes = [jax.ShapeDtypeStruct(q.shape, q.dtype), *sum_shapes[:1]]
  dq, *dq_sum = pl.pallas_call(
      dq_kernel, grid=dq_grid, in_specs=dq_specs + table_specs + dq_sum_specs[:len(sums)],
      out_specs=[_rows(bq, d, 2), *dq_sum_specs[:len(sums) // 2]], out_shape=dq_shapes,
      scratch_shapes=dq_scratch, compiler_params=_params(backend, len(dq_grid)), interpret=interpret,
      name="zoo_flash_dq", cost_estimate=_cost(3, q, k, operands, dq_shapes),  # q·kᵀ, do·vᵀ, dq
  )(*operands)
  if groups > 1:  # [B, H, Lk, D] float32 -> [B, H_kv, Lk, D]: a kv head's gradient sums its query heads'
    dk, dv = (g.reshape(batch, heads // groups, groups, *g.shape[2:]).sum(2).astype(x.dtype)
              for g, x in ((dk, k), (dv, v)))
  dtables, dk_sum = dtables[:len(widths)], dtables[len(widths):]
  return dq, dk, dv, [g.sum(axis=(0, 2))[:, 0] for g in dtables], dq_sum + dk_sum
