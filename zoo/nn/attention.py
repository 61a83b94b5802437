"""Multi-head self-attention that consults the positional-encoding hooks, with an optional KV cache.

The module projects q, k, v, lets the encoding transform them (`transform_qk`), asks it for structured logit biases
(`logit_bias`) and a post-softmax scale (`prob_scale`), and hands everything to the attention implementation chosen by
name. It never looks at which encoding is active.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from zoo.attention import AttentionMask, attend
from zoo.positional import PositionalEncoding, implements


@struct.dataclass
class LayerCache:
  """One layer's keys and values for cached decoding. Slot s holds the token at position s."""

  k: jax.Array  # [batch, cache_length, heads, head_dim], already transformed by `transform_qk`
  v: jax.Array  # [batch, cache_length, heads, head_dim]


def write_at(buffer: jax.Array, update: jax.Array, start: jax.Array) -> jax.Array:
  """Writes `update` [batch, t, ...] into `buffer` [batch, S, ...] at per-example offsets `start` [batch]."""
  def write_one(b, u, s):
    return jax.lax.dynamic_update_slice_in_dim(b, u.astype(b.dtype), s, axis=0)
  return jax.vmap(write_one)(buffer, update, start)


def linear_to_heads(d_model: int, num_heads: int, head_dim: int, *, dtype, rngs: nnx.Rngs) -> nnx.LinearGeneral:
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "heads", "kv"))
  return nnx.LinearGeneral(d_model, (num_heads, head_dim), use_bias=False, kernel_init=init, dtype=dtype, rngs=rngs)


class SelfAttention(nnx.Module):
  def __init__(self, *, d_model: int, num_heads: int, head_dim: int, causal: bool, encoding: PositionalEncoding,
               impl: str = "xla", dropout_rate: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs):
    self.causal = causal
    self.encoding = encoding
    self.impl = impl
    self.dropout_rate = dropout_rate
    self.deterministic = False  # flipped by `model.eval()` / `model.train()`
    self.query = linear_to_heads(d_model, num_heads, head_dim, dtype=dtype, rngs=rngs)
    self.key = linear_to_heads(d_model, num_heads, head_dim, dtype=dtype, rngs=rngs)
    self.value = linear_to_heads(d_model, num_heads, head_dim, dtype=dtype, rngs=rngs)
    out_init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("heads", "kv", "embed"))
    self.out = nnx.LinearGeneral((num_heads, head_dim), d_model, axis=(-2, -1), use_bias=False,
                                 kernel_init=out_init, dtype=dtype, rngs=rngs)
    self.dropout_rngs = rngs.dropout.fork() if dropout_rate > 0 else None

  def __call__(
      self,
      x: jax.Array,  # [batch, length, d_model]
      positions: jax.Array,  # [batch, length] int
      *,
      segment_ids: jax.Array | None = None,  # [batch, length] int (packed sequences)
      valid: jax.Array | None = None,  # [batch, length] bool; False marks padding
      cache: LayerCache | None = None,
      cache_index: jax.Array | None = None,  # [batch] int: where the new tokens go in the cache
  ) -> tuple[jax.Array, LayerCache | None]:
    q, k, v = self.query(x), self.key(x), self.value(x)  # [batch, length, heads, head_dim]
    head_dim = q.shape[-1]
    if implements(self.encoding, "transform_qk"):
      q, k = self.encoding.transform_qk(q, k, positions, positions)
    q_pos = k_pos = positions
    k_valid = valid
    if cache is not None:
      if segment_ids is not None:
        raise ValueError("cached decoding does not support segment_ids (packed sequences)")
      batch, cache_length = cache.k.shape[:2]
      k = write_at(cache.k, k, cache_index)
      v = write_at(cache.v, v, cache_index)
      cache = LayerCache(k=k, v=v)
      slots = jnp.arange(cache_length)
      k_pos = jnp.broadcast_to(slots, (batch, cache_length))
      new_valid = jnp.ones(positions.shape, bool) if valid is None else valid
      k_valid = (slots < cache_index[:, None]) | write_at(jnp.zeros((batch, cache_length), bool), new_valid,
                                                         cache_index)
    mask = AttentionMask(q_pos=q_pos, k_pos=k_pos, q_segment_ids=segment_ids, k_segment_ids=segment_ids,
                         k_valid=k_valid, causal=self.causal)
    bias = (self.encoding.logit_bias(q_pos, k_pos),) if implements(self.encoding, "logit_bias") else ()
    scale = self.encoding.prob_scale(q_pos, k_pos) if implements(self.encoding, "prob_scale") else None
    use_dropout = self.dropout_rate > 0 and not self.deterministic
    out = attend(q, k, v, impl=self.impl, mask=mask, bias=bias, scale=scale, softmax_scale=head_dim ** -0.5,
                 dropout_rate=self.dropout_rate if use_dropout else 0.0,
                 dropout_rng=self.dropout_rngs() if use_dropout else None)
    return self.out(out), cache
