"""The stack every family shares: absolute position (the `embed` hook) → N × Block → final norm (pre-LN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from zoo import positional
from zoo.models.config import TransformerConfig
from zoo.nn import Block, LayerCache, make_norm
from zoo.positional.randomized import RandomizedPositions


class Backbone(nnx.Module):
  def __init__(self, config: TransformerConfig, *, causal: bool, rngs: nnx.Rngs):
    dims = positional.ModelDims(num_heads=config.num_heads, head_dim=config.resolved_head_dim,
                                d_model=config.d_model, max_length=config.max_length, causal=causal)
    build_encoding = lambda: positional.build(config.pe, config.pe_options, dims, rngs=rngs)
    # The encoding of layer 0 also serves the `embed` hook. Encodings with per-layer parameters that opt out of
    # sharing get one instance per layer; all others are one shared instance (one set of parameters).
    self.positional = build_encoding()
    encodings = [self.positional] + [
        self.positional if self.positional.share_across_layers else build_encoding()
        for _ in range(config.num_layers - 1)]
    self.blocks = nnx.List([
        Block(d_model=config.d_model, num_heads=config.num_heads, head_dim=config.resolved_head_dim,
              mlp_dim=config.resolved_mlp_dim, activation=config.activation, norm=config.norm,
              norm_position=config.norm_position, causal=causal, encoding=encoding,
              attention_impl=config.attention_impl, feature_map=config.feature_map,
              num_features=config.num_features, dropout=config.dropout,
              attention_dropout=config.attention_dropout, qk_rank=config.qk_rank,
              attention_logits=config.attention_logits, attention_temperature=config.attention_temperature,
              dtype=config.compute_dtype, rngs=rngs)
        for encoding in encodings])
    self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
    self.randomize = (RandomizedPositions(config.randomized_positions, rngs=rngs) if config.randomized_positions
                      else None)
    pre_norm = config.norm_position == "pre"
    self.final_norm = make_norm(config.norm, config.d_model, dtype=config.compute_dtype, rngs=rngs) if pre_norm else None

  def __call__(
      self,
      x: jax.Array,  # [batch, length, d_model] token features
      positions: jax.Array,  # [batch, length] int
      *,
      relation=None,  # what relates the tokens besides their positions (a graph model's `Graph`), for the hooks
      caches: tuple[LayerCache, ...] | None = None,
      **attention_kwargs,  # segment_ids, valid, cache_index: see SelfAttention
  ) -> tuple[jax.Array, tuple[LayerCache, ...] | None]:
    if self.randomize is not None and caches is None:  # training only; decoding keeps its cache slots' positions
      positions = self.randomize(positions)
    coords = positional.Coordinates(positions, relation)
    if positional.implements(self.positional, "embed"):
      x = self.positional.embed(x, coords)
    x = self.dropout(x)
    new_caches = []
    for i, block in enumerate(self.blocks):
      x, cache = block(x, coords, cache=None if caches is None else caches[i], **attention_kwargs)
      new_caches.append(cache)
    if self.final_norm is not None:
      x = self.final_norm(x)
    return x, (None if caches is None else tuple(new_caches))


def default_positions(tokens: jax.Array) -> jax.Array:
  """0, 1, 2, ... for every sequence: [batch, length] int32 for tokens [batch, length]."""
  return jnp.broadcast_to(jnp.arange(tokens.shape[-1], dtype=jnp.int32), tokens.shape)
