"""Memory-efficient attention in plain XLA: blockwise online softmax in `lax` loops (Rabe & Staats, 2021).

The `[batch, heads, q_len, k_len]` logits are never formed. Queries are split into chunks (an outer `lax.map`), and
each query chunk walks the key chunks (an inner `lax.scan`) carrying the running row maximum `m`, the softmax
denominator `l` and the numerator `acc`. URPE's C enters only the numerator (`acc += (p ⊙ C) · v`, `l += Σ p`), so
`out = acc / l` is `(softmax(s) ⊙ C) · v` exactly — the two-accumulator evaluation of the URPE paper.

Structured terms stay structured: every term is evaluated on the `Tile` of the current block (its query and key
positions and indices, `Term.values`) and the `AttentionMask` on the same slices, so a block costs
O(batch · heads · chunk²) and the whole call O(batch · heads · length · head_dim) memory (a `RelationTable` or
`DenseBias` brings its own O(L²) array; the chunked path reads blocks of it).

A `ContentTerm` (CoPE) needs a summary of its whole row before any block of it: a query chunk then walks its key
chunks twice, first summing the terms' summaries, then computing the softmax with each term's running `before`.

A sliding window skips the key chunks wholly behind it (a `lax.cond` in the scan; not with a content term, whose
summaries walk every chunk).

Gradients come from autodiff through the loops; both loop bodies are `jax.checkpoint`ed, so the backward pass keeps
only the per-tile carries (O(heads · q_len · head_dim · k_chunks)), never the probabilities of a whole row.
This is the CPU fast path at long lengths and the fallback where no Pallas kernel lowers.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from zoo.attention import grouped
from zoo.attention.bias import Content, ContentTerm, Term, Tile, for_call
from zoo.attention.masks import AttentionMask

# Masked logits; any finite value far below every real logit works because masked probabilities are zeroed.
NEG_INF = -1e30


def check_no_dropout(impl: str, dropout_rate: float) -> None:
  if dropout_rate > 0.0:
    raise ValueError(f"attention impl {impl!r} has no attention dropout (got dropout_rate={dropout_rate}); use "
                     f"impl='xla' for attention dropout, or set attention.dropout=0")


def _pad_axis1(x: jax.Array, length: int, mode: str = "constant") -> jax.Array:
  pad = [(0, 0)] * x.ndim
  pad[1] = (0, length - x.shape[1])
  return jnp.pad(x, pad, mode=mode)


def chunked_attention(
    q: jax.Array,  # [batch, q_len, heads, head_dim]
    k: jax.Array,  # [batch, k_len, kv_heads, head_dim]; kv_heads divides heads (grouped-query attention)
    v: jax.Array,  # [batch, k_len, kv_heads, v_dim]
    *,
    mask: AttentionMask,
    bias: Sequence[Term] = (),
    scale: Term | None = None,
    softmax_scale: float | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    chunk_q: int = 512,
    chunk_k: int = 512,
) -> jax.Array:  # [batch, q_len, heads, v_dim]
  """`reference_attention` evaluated chunk by chunk; same arguments, same numbers (up to float rounding)."""
  del dropout_rng
  check_no_dropout("chunked", dropout_rate)
  if softmax_scale is None:
    softmax_scale = q.shape[-1] ** -0.5
  batch, q_len, heads, _ = q.shape
  k_len = k.shape[1]
  cq, ck = min(chunk_q, q_len), min(chunk_k, k_len)
  nq, nk = -(-q_len // cq), -(-k_len // ck)
  bias, scale = for_call(bias, scale, mask.q_pos, mask.k_pos)
  # Lengths that are not multiples of the chunk: pad, mark padded keys invalid, drop padded query rows at the end.
  if mask.k_valid is None:
    mask = mask.replace(k_valid=jnp.ones((batch, k_len), bool))
  pad_q = lambda x: _pad_axis1(x, nq * cq)
  pad_k = lambda x: _pad_axis1(x, nk * ck)
  # Padded positions repeat the last real one: a padded tile of runs holds the call's lags (a `LagTable` reads its
  # table there too).
  mask = mask.map_axes(pad_q, pad_k).replace(q_pos=_pad_axis1(mask.q_pos, nq * cq, "edge"),
                                             k_pos=_pad_axis1(mask.k_pos, nk * ck, "edge"))
  q, k, v = pad_q(q), pad_k(k), pad_k(v)

  def block(qs, ks):
    """The mask and the term tile of query rows qs..qs+cq and key columns ks..ks+ck (padded rows and columns read
    the last real one: they are dropped / invalid anyway)."""
    mask_block = mask.map_axes(lambda x: jax.lax.dynamic_slice_in_dim(x, qs, cq, axis=1),
                               lambda x: jax.lax.dynamic_slice_in_dim(x, ks, ck, axis=1))
    tile = Tile(mask_block.q_pos, mask_block.k_pos, jnp.minimum(qs + jnp.arange(cq), q_len - 1),
                jnp.minimum(ks + jnp.arange(ck), k_len - 1))
    return mask_block, tile

  content_terms = [term for term in bias if isinstance(term, ContentTerm)]

  def in_window(qs, ks):
    """Whether some key of the block is less than `window` positions behind some query of it, in some example."""
    mask_block, _ = block(qs, ks)
    return jnp.any(mask_block.k_pos.max(axis=1) > mask_block.q_pos.min(axis=1) - mask.window)

  key_starts = jnp.arange(nk) * ck

  def content(qs, ks, q_c):
    """The key block's content logits and mask, its term tile and `Content`."""
    k_c = jax.lax.dynamic_slice_in_dim(k, ks, ck, axis=1)
    mask_block, tile = block(qs, ks)
    logits = grouped.logits(q_c, k_c) * softmax_scale  # [batch, heads, cq, ck]
    return tile, Content(q_c, logits, mask_block.dense(), softmax_scale)  # allowed: [batch, 1, cq, ck]

  @jax.checkpoint
  def key_step(carry, ks, qs, q_c, totals):
    m, l, acc, before = carry  # [batch, heads, cq, 1] ×2, [batch, heads, cq, v_dim] float32; content terms' sums
    v_c = jax.lax.dynamic_slice_in_dim(v, ks, ck, axis=1)
    tile, c = content(qs, ks, q_c)
    s, after = c.logits, []
    for term in bias:
      if isinstance(term, ContentTerm):
        i = len(after)
        s = s + term.values_in_row(tile, c, totals[i], before[i])
        after.append(before[i] + term.summary(tile, c))
      else:
        s = s + term.values(tile)
    s = jnp.where(c.allowed, s, NEG_INF)
    m_new = jnp.maximum(m, s.max(axis=-1, keepdims=True))
    p = jnp.where(c.allowed, jnp.exp(s - m_new), 0.0)
    alpha = jnp.exp(m - m_new)
    l = alpha * l + p.sum(axis=-1, keepdims=True)
    if scale is not None:
      p = p * scale.values(tile)
    acc = alpha * acc + grouped.weighted_values(p.astype(v.dtype), v_c, preferred_element_type=jnp.float32)
    return (m_new, l, acc, tuple(after)), None

  def row_totals(qs, q_c):
    """Each content term's summary of the query chunk's whole row (the first walk over the key chunks)."""
    if not content_terms:
      return ()
    summaries = lambda ks: [term.summary(*content(qs, ks, q_c)) for term in content_terms]
    zeros = tuple(jnp.zeros_like(x) for x in jax.eval_shape(summaries, 0))
    add = jax.checkpoint(lambda sums, ks: (tuple(a + b for a, b in zip(sums, summaries(ks))), None))
    return jax.lax.scan(add, zeros, key_starts)[0]

  @jax.checkpoint
  def query_chunk(qs):
    q_c = jax.lax.dynamic_slice_in_dim(q, qs, cq, axis=1)
    totals = row_totals(qs, q_c)
    init = (jnp.full((batch, heads, cq, 1), NEG_INF, jnp.float32), jnp.zeros((batch, heads, cq, 1), jnp.float32),
            jnp.zeros((batch, heads, cq, v.shape[-1]), jnp.float32), tuple(jnp.zeros_like(t) for t in totals))
    step = lambda c, ks: key_step(c, ks, qs, q_c, totals)
    if mask.window is not None and not content_terms:  # key chunks wholly behind the window: carried over as they are
      step = lambda c, ks, step=step: jax.lax.cond(in_window(qs, ks), step, lambda c, _: (c, None), c, ks)
    (_, l, acc, _), _ = jax.lax.scan(step, init, key_starts)
    out = jnp.where(l > 0, acc / jnp.where(l > 0, l, 1.0), 0.0)  # a query that sees no key outputs 0
    return out.transpose(0, 2, 1, 3).astype(v.dtype)  # [batch, cq, heads, v_dim]

  out = jax.lax.map(query_chunk, jnp.arange(nq) * cq)  # [nq, batch, cq, heads, v_dim]
  return out.transpose(1, 0, 2, 3, 4).reshape(batch, nq * cq, heads, v.shape[-1])[:, :q_len]
