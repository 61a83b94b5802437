"""The encoder family: bidirectional attention with a token-level, sequence-classification or dual-encoder head; with
`causal=True` and the token head, a causal sequence-to-sequence model (per-position regression or tagging)."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from zoo.models.backbone import Backbone, default_positions
from zoo.models.config import EncoderConfig
from zoo.models.registry import register
from zoo.nn.context import CallContext
from zoo.nn.embed import TokenEmbedding


def classifier(in_features: int, num_classes: int, *, rngs: nnx.Rngs) -> nnx.Linear:
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", None))
  return nnx.Linear(in_features, num_classes, kernel_init=init, rngs=rngs)


@register("encoder")
class Encoder(nnx.Module):
  """tokens -> logits: [batch, length, classes] (token head), [batch, classes] (sequence head), or for pairs
  tokens [batch, 2, length] -> [batch, classes] (dual head: both sides encoded by the same tower, then
  [u, v, u·v, u−v] → MLP → classes, as in LRA Retrieval), or the final features [batch, length, d_model] (head
  "none": a converted pretrained encoder, whose task heads zoo does not carry)."""

  Config = EncoderConfig
  batch_fields: ClassVar[tuple[str, ...]] = ("positions", "segment_ids", "mask")  # taken by keyword from a batch

  def __init__(self, config: EncoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.embed = TokenEmbedding(config.vocab_size, config.d_model, dtype=config.compute_dtype, rngs=rngs,
                                scale=config.scale_embeddings)
    if config.type_vocab_size:
      type_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("vocab", "embed"))
      self.token_types = nnx.Embed(config.type_vocab_size, config.d_model, embedding_init=type_init,
                                   dtype=config.compute_dtype, rngs=rngs)
    pooled = config.head not in ("token", "none")
    if pooled and config.pooling == "cls":
      cls_init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("embed",))
      self.cls = nnx.Param(cls_init(rngs.params(), (config.d_model,)))  # [d_model]
    self.backbone = Backbone(config, causal=config.causal_attention, rngs=rngs)
    if config.head == "dual":
      hidden_init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "embed"))
      self.pair_hidden = nnx.Linear(4 * config.d_model, config.d_model, kernel_init=hidden_init, rngs=rngs)
    if config.head != "none":
      self.head = classifier(config.d_model, config.num_classes, rngs=rngs)

  def encode(
      self,
      tokens: jax.Array,  # [batch, length] int
      *,
      positions: jax.Array | None = None,  # [batch, length] int; default 0..length-1
      segment_ids: jax.Array | None = None,  # [batch, length] int (packed sequences; token head only)
      mask: jax.Array | None = None,  # [batch, length] bool; False marks padding
      token_types: jax.Array | None = None,  # [batch, length] int < type_vocab_size; default 0
  ) -> tuple[jax.Array, jax.Array | None]:  # features [batch, length(+1 with CLS), d_model], their validity
    positions = default_positions(tokens) if positions is None else positions
    x = self.embed(tokens)  # [batch, length, d_model]
    if self.config.type_vocab_size:
      x = x + self.token_types(jnp.zeros_like(tokens) if token_types is None else token_types)
    elif token_types is not None:
      raise ValueError("token_types need an encoder with type_vocab_size > 0")
    if self.config.head not in ("token", "none") and self.config.pooling == "cls":
      # The CLS vector takes position 0; token positions shift by one.
      batch = tokens.shape[0]
      cls = jnp.broadcast_to(self.cls[...].astype(x.dtype), (batch, 1, x.shape[-1]))
      x = jnp.concatenate([cls, x], axis=1)
      positions = jnp.concatenate([jnp.zeros((batch, 1), positions.dtype), positions + 1], axis=1)
      if mask is not None:
        mask = jnp.concatenate([jnp.ones((batch, 1), bool), mask.astype(bool)], axis=1)
    features, _ = self.backbone(x, CallContext(positions, segment_ids=segment_ids, valid=mask))
    return features, mask

  def pool(self, features: jax.Array, mask: jax.Array | None) -> jax.Array:  # -> [batch, d_model]
    if self.config.pooling == "cls":
      return features[:, 0]
    weights = jnp.ones(features.shape[:2]) if mask is None else mask.astype(jnp.float32)  # [batch, length]
    total = jnp.einsum("bld,bl->bd", features.astype(jnp.float32), weights)
    return total / jnp.maximum(weights.sum(axis=1, keepdims=True), 1.0)

  def __call__(self, tokens: jax.Array, *, positions: jax.Array | None = None,
               segment_ids: jax.Array | None = None, mask: jax.Array | None = None,
               token_types: jax.Array | None = None) -> jax.Array:
    head = self.config.head
    if segment_ids is not None and head not in ("token", "none"):
      raise ValueError(f"segment_ids (packed sequences) need head='token'; this encoder has head={head!r}")
    expected_rank = 3 if head == "dual" else 2
    if tokens.ndim != expected_rank:
      shape = "[batch, 2, length]" if head == "dual" else "[batch, length]"
      raise ValueError(f"encoder with head={head!r} expects tokens {shape}, got shape {tokens.shape}")
    if head == "dual":
      if tokens.shape[1] != 2:
        raise ValueError(f"dual head expects tokens [batch, 2, length], got shape {tokens.shape}")
      pairs_to_batch = lambda a: None if a is None else a.reshape(-1, a.shape[-1])  # [batch·2, length]
      features, valid = self.encode(pairs_to_batch(tokens), positions=pairs_to_batch(positions),
                                    mask=pairs_to_batch(mask))
      pooled = self.pool(features, valid).reshape(tokens.shape[0], 2, -1)
      u, v = pooled[:, 0], pooled[:, 1]
      hidden = jax.nn.gelu(self.pair_hidden(jnp.concatenate([u, v, u * v, u - v], axis=-1)), approximate=False)
      return self.head(hidden).astype(jnp.float32)
    features, valid = self.encode(tokens, positions=positions, segment_ids=segment_ids, mask=mask,
                                  token_types=token_types)
    if head == "none":
      return features.astype(jnp.float32)
    if head == "token":
      return self.head(features).astype(jnp.float32)
    return self.head(self.pool(features, valid)).astype(jnp.float32)
