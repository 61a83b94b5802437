"""The XLA reference attention: the oracle every other implementation is tested against.

    out = (softmax(q·kᵀ · softmax_scale + Σ bias + mask) ⊙ scale) · v

with softmax one of the weight rules `WEIGHTS` (the controls of the memorization study, Kajitsuka & Sato 2024):
"hardmax" is one-hot on each row's first maximum of the same masked logits in the forward and passes softmax's
gradient at those logits in the backward (straight-through: the forward is the argmax, which has no gradient, the
backward the softmax it is the limit of; so `temperature` changes only the backward's sharpness); "uniform" gives
every key the mask allows the weight 1/|visible keys|, reading neither q, k nor the bias; "none" gives every key 0,
so the attention adds nothing (an FFN-only model).

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


@jax.custom_vjp
def hardmax(logits: jax.Array) -> jax.Array:
  """[..., k] -> one-hot on the first maximum of each row (ties: the lowest index, as `jnp.argmax`); its gradient
  is softmax's at the same logits."""
  return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=logits.dtype)


def _hardmax_forward(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  return hardmax(logits), jax.nn.softmax(logits, axis=-1)


def _hardmax_backward(probs: jax.Array, grad: jax.Array) -> tuple[jax.Array]:
  """Softmax's vector-Jacobian product: ∂L/∂z = p ⊙ (g − Σ_k g_k p_k)."""
  return (probs * (grad - jnp.sum(grad * probs, axis=-1, keepdims=True)),)


hardmax.defvjp(_hardmax_forward, _hardmax_backward)


def _uniform(logits: jax.Array, allowed: jax.Array) -> jax.Array:
  weights = allowed / jnp.maximum(jnp.sum(allowed, axis=-1, keepdims=True), 1)  # [batch, 1, q_len, k_len]
  return jnp.broadcast_to(weights, logits.shape).astype(logits.dtype)


# name -> (masked logits [batch, heads, q_len, k_len] float32, allowed [batch, 1, q_len, k_len]) -> weights.
WEIGHTS = {
    "softmax": lambda logits, allowed: jax.nn.softmax(logits, axis=-1),
    "hardmax": lambda logits, allowed: hardmax(logits),
    "uniform": _uniform,
    "none": lambda logits, allowed: jnp.zeros_like(logits),
}


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
    weights: str = "softmax",  # a name from WEIGHTS
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
  probs = WEIGHTS[weights](jnp.where(allowed, logits, jnp.finfo(jnp.float32).min), allowed)
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
