"""The stack every family shares: absolute position (the `embed` hook) → N × Block → final norm (pre-LN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from zoo import positional
from zoo.models import scan
from zoo.models.config import TransformerConfig
from zoo.nn import Block, CallContext
from zoo.positional.randomized import RandomizedPositions


class Backbone(nnx.Module):
  def __init__(self, config: TransformerConfig, *, causal: bool, rngs: nnx.Rngs):
    dims = positional.ModelDims(num_heads=config.attention.num_heads, head_dim=config.attention.resolved_head_dim(
        config.d_model), d_model=config.d_model, max_length=config.max_length, causal=causal)
    pe = config.positional
    build_encoding = lambda: positional.build(pe.name, pe.options, dims, rngs=rngs)
    # The encoding of layer 0 also serves the `embed` hook. Encodings with per-layer parameters that opt out of
    # sharing get one instance per layer; all others are one shared instance (one set of parameters).
    self.positional = build_encoding()
    encodings = [self.positional] + [
        self.positional if self.positional.share_across_layers else build_encoding()
        for _ in range(config.num_layers - 1)]
    blocks = [
        Block(config.d_model, attention=config.attention, mlp=config.mlp, norm=config.norm, causal=causal,
              encoding=encoding, dropout=config.dropout, dtype=config.compute_dtype, rngs=rngs)
        for encoding in encodings]
    # Scanned: one Block holding every layer's variables stacked (zoo.models.scan); else a list of N blocks.
    self.scan_layers, self.remat, self.num_layers = config.scan_layers, config.remat, config.num_layers
    self.shared_encoding = self.positional.share_across_layers
    self.blocks = (scan.stack_blocks(blocks, shared_encoding=self.shared_encoding) if self.scan_layers
                   else nnx.List(blocks))
    norm = lambda: config.norm.build(config.d_model, dtype=config.compute_dtype, rngs=rngs)
    self.embedding_norm = norm() if config.embedding_norm else None
    self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
    self.randomize = (RandomizedPositions(pe.randomized_positions, rngs=rngs) if pe.randomized_positions
                      else None)
    self.final_norm = norm() if config.norm.position == "pre" else None

  def __call__(
      self,
      x: jax.Array,  # [batch, length, d_model] token features
      context: CallContext,  # the call's positions (and relation), segment ids, validity
      *,
      caches=None,  # from `init_caches`: one LayerCache per block, or (scanned) one stacked [layers, ...]
  ):  # (features [batch, length, d_model], the updated caches or None)
    if self.randomize is not None and caches is None:  # training only; decoding keeps its cache slots' positions
      context = context.replace(positions=self.randomize(context.positions))
    if positional.implements(self.positional, "embed"):
      x = self.embedding_encoding().embed(x, context.coords)
    if self.embedding_norm is not None:
      x = self.embedding_norm(x)
    x = self.dropout(x)
    if self.scan_layers:
      x, caches = scan.run_stacked(self.blocks, x, context, caches, shared_encoding=self.shared_encoding,
                                   remat=self.remat)
    else:
      new_caches = []
      for i, block in enumerate(self.blocks):
        x, cache = scan.run_block(block, x, context, None if caches is None else caches[i], remat=self.remat)
        new_caches.append(cache)
      caches = None if caches is None else tuple(new_caches)
    if self.final_norm is not None:
      x = self.final_norm(x)
    return x, caches

  def layer(self, index: int) -> Block:
    """Block `index` (scanned: a copy of its slice of the stack, for reading)."""
    if not self.scan_layers:
      return self.blocks[index]
    return scan.layer(self.blocks, index, shared_encoding=self.shared_encoding)

  def embedding_encoding(self) -> positional.PositionalEncoding:
    """The encoding whose `embed` hook runs: layer 0's (scanned with per-layer tables, a slice of the stack)."""
    return self.positional if self.shared_encoding or not self.scan_layers else self.layer(0).attention.encoding

  def init_caches(self, batch: int, cache_length: int):
    """Empty decoding caches: a tuple of one per block, or (scanned) one whose arrays are stacked [layers, ...]."""
    if not self.scan_layers:
      return tuple(block.attention.init_cache(batch, cache_length) for block in self.blocks)
    one = self.layer(0).attention.init_cache(batch, cache_length)
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (self.num_layers, *a.shape)), one)


def default_positions(tokens: jax.Array) -> jax.Array:
  """0, 1, 2, ... for every sequence: [batch, length] int32 for tokens [batch, length]."""
  return jnp.broadcast_to(jnp.arange(tokens.shape[-1], dtype=jnp.int32), tokens.shape)
