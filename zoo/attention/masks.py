"""Which keys each query may see, described structurally (like the biases) so kernels can build mask tiles.

Four rules combine with AND:
* causal — a query sees keys whose *position* is not after its own (`k_pos <= q_pos`). Positions, not array indices:
  with a KV cache the query at position 17 sees cache slots 0..17; with packing, positions restart per segment.
* window — sliding-window attention (Mistral's, Qwen2's): a query sees keys less than `window` positions behind it,
  `k_pos > q_pos − window`. With causal that is q_pos − window < k_pos ≤ q_pos: exactly `window` positions, the
  query's own included — Hugging Face's rule (`sliding_window_overlay` in transformers' masking_utils: `kv_idx >
  q_idx - sliding_window`, AND the causal mask), so a Mistral's `sliding_window` is this `window` as it is.
* segments — packed sequences: a query sees only keys with the same segment id.
* key validity — padding and unwritten KV-cache slots are invalid keys.

A query that sees no key at all (a padded row) gets an all-zero output from every implementation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class AttentionMask:
  q_pos: jax.Array  # [batch, q_len] int
  k_pos: jax.Array  # [batch, k_len] int
  q_segment_ids: jax.Array | None = None  # [batch, q_len] int
  k_segment_ids: jax.Array | None = None  # [batch, k_len] int
  k_valid: jax.Array | None = None  # [batch, k_len] bool
  causal: bool = struct.field(pytree_node=False, default=False)
  window: int | None = struct.field(pytree_node=False, default=None)  # None: no window

  def map_axes(self, fn_q, fn_k) -> AttentionMask:
    """The mask with every query-axis array replaced by fn_q(array) and every key-axis array by fn_k(array) (each
    [batch, length]): how the chunked path pads and tiles it."""
    opt = lambda x, fn: None if x is None else fn(x)
    return self.replace(q_pos=fn_q(self.q_pos), k_pos=fn_k(self.k_pos), q_segment_ids=opt(self.q_segment_ids, fn_q),
                        k_segment_ids=opt(self.k_segment_ids, fn_k), k_valid=opt(self.k_valid, fn_k))

  def dense(self) -> jax.Array:
    """True where attention is allowed: [batch, 1, q_len, k_len] (broadcasts over heads)."""
    batch, q_len = self.q_pos.shape
    allowed = jnp.ones((batch, q_len, self.k_pos.shape[1]), dtype=bool)
    if self.causal:
      allowed &= self.k_pos[:, None, :] <= self.q_pos[:, :, None]
    if self.window is not None:
      allowed &= self.k_pos[:, None, :] > self.q_pos[:, :, None] - self.window
    if self.q_segment_ids is not None or self.k_segment_ids is not None:
      if self.q_segment_ids is None or self.k_segment_ids is None:
        raise ValueError("segment ids must be given for both queries and keys, or for neither")
      allowed &= self.q_segment_ids[:, :, None] == self.k_segment_ids[:, None, :]
    if self.k_valid is not None:
      allowed &= self.k_valid[:, None, :]
    return allowed[:, None]
