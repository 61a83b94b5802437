"""The XLA reference attention: the oracle every other implementation is tested against.

    out = (softmax(q·kᵀ · softmax_scale + Σ bias + mask) ⊙ scale) · v

The logits, the softmax and the post-softmax scale are computed in float32 whatever the activation dtype; only the
final product with `v` runs in `v.dtype`. Keys and values may have fewer heads than the queries (grouped-query
attention, `zoo.attention.grouped`): query head h reads kv head h // (heads / kv_heads). Masked keys get probability exactly 0 (so URPE's C never sees them) and a
query with no visible key outputs zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from zoo.attention import grouped
from zoo.attention.bias import Content, Term, Tile, dense_sum, for_call
from zoo.attention.masks import AttentionMask


def reference_attention(
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
) -> jax.Array:  # [batch, q_len, heads, v_dim]
  if softmax_scale is None:
    softmax_scale = q.shape[-1] ** -0.5
  logits = grouped.logits(q, k) * softmax_scale  # [batch, heads, q_len, k_len] float32
  tile = Tile.whole(mask.q_pos, mask.k_pos)  # every term is evaluated at the mask's coordinates
  bias, scale = for_call(bias, scale, mask.q_pos, mask.k_pos)
  allowed = mask.dense()  # [batch, 1, q_len, k_len]
  if bias:
    logits = logits + dense_sum(bias, tile, Content(q, logits, allowed, softmax_scale))
  # A masked key's probability is exactly 0 wherever its row sees some key (exp(finfo.min − max) underflows to 0);
  # rows that see no key (uniform here) are zeroed at the output, a [batch, q_len] factor instead of a second
  # [batch, heads, q_len, k_len] pass.
  probs = jax.nn.softmax(jnp.where(allowed, logits, jnp.finfo(jnp.float32).min), axis=-1)
  sees_a_key = jnp.any(allowed, axis=-1)[:, 0, :, None, None]  # [batch, q_len, 1, 1]
  if scale is not None:
    probs = probs * scale.values(tile)
  if dropout_rate > 0.0:
    if dropout_rng is None:
      raise ValueError("attention dropout needs a dropout_rng")
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
  out = grouped.weighted_values(probs.astype(v.dtype), v).transpose(0, 2, 1, 3)  # [batch, q_len, heads, v_dim]
  return jnp.where(sees_a_key, out, jnp.zeros((), out.dtype))
