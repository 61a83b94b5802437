"""Grouped-query attention's two contractions, without repeating keys and values to the query heads.

Keys and values come with `kv_heads` heads, a divisor of the query heads; query head h reads kv head
h // (heads / kv_heads). Splitting the query heads into [kv_heads, group] and contracting each group against its one
kv head computes exactly what `jnp.repeat`-ed keys and values would, without the heads / kv_heads times larger copy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def group_size(heads: int, kv_heads: int) -> int:
  """How many query heads share one kv head; a ValueError unless kv_heads divides heads."""
  if kv_heads < 1 or heads % kv_heads:
    raise ValueError(f"grouped-query attention needs kv heads dividing the query heads, got {kv_heads} and {heads}")
  return heads // kv_heads


def logits(q: jax.Array, k: jax.Array) -> jax.Array:
  """q [batch, q_len, heads, d] · k [batch, k_len, kv_heads, d] -> [batch, heads, q_len, k_len] float32."""
  batch, q_len, heads, dim = q.shape
  kv_heads = k.shape[2]
  q = q.reshape(batch, q_len, kv_heads, group_size(heads, kv_heads), dim)
  s = jnp.einsum("bqhgd,bkhd->bhgqk", q, k, preferred_element_type=jnp.float32)
  return s.reshape(batch, heads, q_len, k.shape[1])


def weighted_values(p: jax.Array, v: jax.Array, **einsum_options) -> jax.Array:
  """p [batch, heads, q_len, k_len] · v [batch, k_len, kv_heads, v_dim] -> [batch, heads, q_len, v_dim]."""
  batch, heads, q_len, k_len = p.shape
  kv_heads = v.shape[2]
  p = p.reshape(batch, kv_heads, group_size(heads, kv_heads), q_len, k_len)
  return jnp.einsum("bhgqk,bkhd->bhgqd", p, v, **einsum_options).reshape(batch, heads, q_len, v.shape[-1])
