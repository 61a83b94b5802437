"""The decoder family: a causal language model with a KV cache and `generate`.

Cached decoding keeps, per layer, what its attention needs (`SelfAttention.init_cache`): keys and values for
`cache_length` slots with softmax attention (slot s holds the token at position s), the recurrent state with linear
attention. The decoder never looks inside. `extend` appends tokens (a whole prompt = prefill, or one token = a decode step) and returns their logits, so a
prompt followed by n single-token steps computes exactly what one full forward over the same tokens computes.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx, struct

from zoo.models.backbone import Backbone, default_positions
from zoo.models.config import DecoderConfig
from zoo.models.registry import register
from zoo.models.sampling import check_sampling, sample
from zoo.nn.attention import LayerCache
from zoo.nn.context import CallContext
from zoo.nn.embed import TokenEmbedding


@struct.dataclass
class DecodeCache:
  # One per block: a KVCache (softmax) or a LinearState (linear attention); scanned layers: one, stacked [layers, ...]
  layers: tuple[LayerCache, ...] | LayerCache
  index: jax.Array  # [batch] int32: how many tokens of each sequence are in the cache
  length: int = struct.field(pytree_node=False)  # the most tokens it may hold (positions 0..length-1)


@register("decoder")
class Decoder(nnx.Module):
  Config = DecoderConfig
  batch_fields: ClassVar[tuple[str, ...]] = ("positions", "segment_ids", "mask")  # taken by keyword from a batch

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.embed = TokenEmbedding(config.vocab_size, config.d_model, dtype=config.compute_dtype, rngs=rngs,
                                scale=config.scale_embeddings)
    self.backbone = Backbone(config, causal=config.causal_attention, rngs=rngs)
    if not config.tie_embeddings:
      init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "vocab"))
      self.lm_head = nnx.Linear(config.d_model, config.vocab_size, use_bias=False, kernel_init=init,
                                dtype=config.compute_dtype, rngs=rngs)

  def logits(self, features: jax.Array) -> jax.Array:  # [batch, length, d_model] -> [batch, length, vocab] f32
    out = self.embed.attend(features) if self.config.tie_embeddings else self.lm_head(features)
    return out.astype(jnp.float32)

  def __call__(
      self,
      tokens: jax.Array,  # [batch, length] int
      *,
      positions: jax.Array | None = None,  # [batch, length] int; default 0..length-1
      segment_ids: jax.Array | None = None,  # [batch, length] int (packed sequences)
      mask: jax.Array | None = None,  # [batch, length] bool; False marks padding
  ) -> jax.Array:  # [batch, length, vocab] float32: logits for the next token at every position
    positions = default_positions(tokens) if positions is None else positions
    features, _ = self.backbone(self.embed(tokens), CallContext(positions, segment_ids=segment_ids, valid=mask))
    return self.logits(features)

  def check_cache_length(self, cache_length: int) -> None:
    """Raises a ValueError if the positional encoding cannot serve positions up to `cache_length - 1`."""
    limit = self.backbone.positional.max_positions
    if limit is not None and cache_length > limit:
      raise ValueError(f"cache_length {cache_length} exceeds what the {self.config.positional.name!r} encoding "
                       f"supports (max_length {limit})")

  def init_cache(self, batch: int, cache_length: int) -> DecodeCache:
    """An empty cache for `batch` sequences of up to `cache_length` tokens (prompt + generated)."""
    self.check_cache_length(cache_length)
    return DecodeCache(layers=self.backbone.init_caches(batch, cache_length), index=jnp.zeros((batch,), jnp.int32),
                       length=cache_length)

  def extend(
      self,
      tokens: jax.Array,  # [batch, t] int: the next t tokens of every sequence
      cache: DecodeCache,
      *,
      valid: jax.Array | None = None,  # [batch, t] bool, right-padded: ragged prompts in one batch
      positions: jax.Array | None = None,  # [batch, t] int; default index, index+1, ...
  ) -> tuple[jax.Array, DecodeCache]:  # logits [batch, t, vocab] f32, the cache with the tokens appended
    """Runs `tokens` at positions index, index+1, ... of each sequence (or at explicit `positions`, kept with them
    in the cache: a continuation of a document whose start is not in the cache), attending to the cache and to each
    other.

    The caller keeps index + t within `cache.length` (`generate` checks it): writes past the end are clamped by XLA.
    Random parts (FAVOR+ features, SPE noise) must be the same at every step of one cache: they are fixed in eval
    mode, so call `model.eval()` first (`generate` does).
    """
    if positions is None:
      positions = cache.index[:, None] + jnp.arange(tokens.shape[1], dtype=jnp.int32)  # [batch, t]
    context = CallContext(positions, valid=valid)
    features, layers = self.backbone(self.embed(tokens), context, caches=cache.layers)
    added = tokens.shape[1] if valid is None else valid.sum(axis=1).astype(jnp.int32)
    return self.logits(features), DecodeCache(layers=layers, index=cache.index + added, length=cache.length)


def generate(
    model: Decoder,
    prompts: jax.Array,  # [batch, prompt_length] int, right-padded when prompt_lengths is given
    *,
    max_new_tokens: int,
    rng: jax.Array,
    prompt_lengths: jax.Array | None = None,  # [batch] int; default: every prompt is full length
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
) -> jax.Array:  # [batch, max_new_tokens] int32; after eos_id, pad_id
  """Prefills the cache with the prompts, then samples one token per step (greedy when temperature is 0).

  Runs as one compiled program (prefill + `lax.scan` over decode steps) with dropout off.
  """
  batch, prompt_length = prompts.shape
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  check_sampling(temperature, top_k, top_p, model.config.vocab_size)
  if prompt_lengths is None:
    prompt_lengths = jnp.full((batch,), prompt_length, jnp.int32)
  graphdef, state = nnx.split(model)
  run = functools.partial(_generate, graphdef, max_new_tokens=max_new_tokens, temperature=temperature,
                          top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)
  model.check_cache_length(prompt_length + max_new_tokens)
  return run(state, prompts, jnp.asarray(prompt_lengths, jnp.int32), rng)


@functools.partial(jax.jit, static_argnums=0,
                   static_argnames=("max_new_tokens", "temperature", "top_k", "top_p", "eos_id", "pad_id"))
def _generate(graphdef, state, prompts, prompt_lengths, rng, *, max_new_tokens, temperature, top_k, top_p, eos_id,
              pad_id):
  model = nnx.merge(graphdef, state)
  model.eval()
  batch, prompt_length = prompts.shape
  cache = model.init_cache(batch, prompt_length + max_new_tokens)
  valid = jnp.arange(prompt_length) < prompt_lengths[:, None]
  logits, cache = model.extend(prompts, cache, valid=valid)
  last = jnp.take_along_axis(logits, (prompt_lengths - 1)[:, None, None], axis=1)[:, 0]  # [batch, vocab]

  def step(carry, step_rng):
    last, cache, done = carry
    token = sample(last, step_rng, temperature=temperature, top_k=top_k, top_p=top_p)  # [batch]
    token = jnp.where(done, pad_id, token)
    if eos_id is not None:
      done = done | (token == eos_id)
    logits, cache = model.extend(token[:, None], cache)
    return (logits[:, 0], cache, done), token

  done = jnp.zeros((batch,), bool)
  _, tokens = jax.lax.scan(step, (last, cache, done), jax.random.split(rng, max_new_tokens))
  return tokens.T  # [batch, max_new_tokens]
