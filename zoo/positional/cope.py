"""CoPE (Golovneva et al., 2024, "Contextual Position Encoding: Learning to Count What's Important"): positions
counted by the content, not by the tokens.

Each query i gates every key j it sees, g_ij = σ(q_i·k_j/√d) — the paper's scaled dot product, whatever
temperature or logit scale the model's softmax uses —, and the position of key j relative to i is the number
of gated keys between them,

    p_ij = Σ_{k visible, between j and i} g_ik        (p_ii = g_ii; a causal model counts keys j ≤ k ≤ i),

a real number. The bias is an interpolation of learned position embeddings e[0..n−1] ∈ ℝ^head_dim read by the query:
z_i[p] = q_i·e[p] at the integers, and bias_ij = (1 − w)·z_i[⌊p_ij⌋] + w·z_i[⌈p_ij⌉], w = p_ij − ⌊p_ij⌋, with p
clipped to n − 1 — as in the paper's reference code (embeddings shared by the heads, zero-initialised, one set per
layer). Keys count "between" by position, so the bias is shift-invariant; in a bidirectional model a key after the
query counts the keys from the query to it, the mirror image of the causal count.

The term reads the content (queries and their logits) and a whole row of keys at once, so it is a `ContentTerm`:
the XLA reference and the chunked core evaluate it (the chunked core sums each row's gates in a first walk over the
key chunks); the Pallas kernels, which take terms of positions only, do not serve it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx, struct

from zoo.attention.bias import Content, ContentTerm, Tile
from zoo.config import check
from zoo.positional.base import ModelDims, PositionalEncoding
from zoo.positional.registry import register


@dataclasses.dataclass(frozen=True)
class CopeOptions:
  num_positions: int = 64  # n: counts are clipped to n − 1 (the paper's npos_max)
  share_across_layers: bool = False  # the paper gives every layer its own embeddings

  def __post_init__(self):
    check(self.num_positions >= 2, f"cope: num_positions must be >= 2, got {self.num_positions}")


@struct.dataclass
class GatedCount(ContentTerm):
  """bias[b, h, i, j] = interpolation of q_i·e[·] at p_ij (see the module docstring).

  Row summary (n = 2): Σ of the visible gates of keys at or before the query's position, and of keys at or after it."""

  embeddings: jax.Array  # [num_positions, head_dim]

  def _gates(self, tile: Tile, content: Content):
    """The visible gates of keys at or before the query position, and at or after it: [batch, heads, tq, tk] ×2."""
    gates = jnp.where(content.allowed, jax.nn.sigmoid(content.scaled_dot_products()), 0.0)
    at_or_before = tile.k_pos[:, None, None, :] <= tile.q_pos[:, None, :, None]  # [batch, 1, tq, tk]
    at_or_after = tile.k_pos[:, None, None, :] >= tile.q_pos[:, None, :, None]
    return jnp.where(at_or_before, gates, 0.0), jnp.where(at_or_after, gates, 0.0)

  def summary(self, tile, content):
    left, right = self._gates(tile, content)
    return jnp.stack([left.sum(-1), right.sum(-1)], axis=-1)  # [batch, heads, tq, 2]

  def values_in_row(self, tile, content, total, before):
    left, right = self._gates(tile, content)
    before = jnp.broadcast_to(before, total.shape)
    # Keys at or before the query count from themselves up to the query: the row's left total minus the left
    # gates of the keys before them; keys after it count from the query up to themselves.
    from_key = total[..., :1] - before[..., :1] - jnp.cumsum(left, axis=-1) + left
    to_key = before[..., 1:] + jnp.cumsum(right, axis=-1)
    count = jnp.where(tile.k_pos[:, None, None, :] <= tile.q_pos[:, None, :, None], from_key, to_key)
    count = jnp.clip(count, 0.0, self.embeddings.shape[0] - 1)  # [batch, heads, tq, tk]
    z = jnp.einsum("bqhd,nd->bhqn", content.q.astype(jnp.float32), self.embeddings.astype(jnp.float32))
    floor = jnp.floor(count)
    w = count - floor
    lo = jnp.take_along_axis(z, floor.astype(jnp.int32), axis=-1)
    hi = jnp.take_along_axis(z, jnp.ceil(count).astype(jnp.int32), axis=-1)
    return (1.0 - w) * lo + w * hi


@register("cope")
class Cope(PositionalEncoding):
  Options = CopeOptions
  relative = True

  def __init__(self, options: CopeOptions, dims: ModelDims, *, rngs: nnx.Rngs):
    super().__init__(options, dims, rngs=rngs)
    init = nnx.with_partitioning(nnx.initializers.zeros, (None, None))
    self.embeddings = nnx.Param(init(rngs.params(), (options.num_positions, dims.head_dim)))

  def logit_bias(self, q, k) -> GatedCount:
    del q, k  # counted at the attention call's positions, from its content
    return GatedCount(embeddings=self.embeddings[...])
