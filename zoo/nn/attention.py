"""Multi-head self-attention that consults the positional-encoding hooks, with a decoding cache.

The module projects q, k, v, lets the encoding transform them (`transform_qk`), asks it for structured logit biases
(`logit_bias`) and a post-softmax scale (`prob_scale`), and hands everything to the attention implementation chosen by
name. It never looks at which encoding is active.

The decoding cache depends on the implementation (its declared `Core.cache`), not on the encoding: softmax attention
keeps every key and value (`KVCache`); linear attention keeps only its recurrent state (`LinearState`: Σ φ(k)vᵀ and
Σ φ(k)), so each new token costs O(features · head_dim) whatever the prefix length. `init_cache` builds the right
one; callers pass it around without looking inside.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx, struct

from zoo.attention import AttentionMask, attend, core
from zoo.attention import linear
from zoo.nn import decay
from zoo.positional import Coordinates, PositionalEncoding, attention_terms, implements


@struct.dataclass
class KVCache:
  """One softmax-attention layer's keys and values for cached decoding. Slot s holds the token at position s."""

  k: jax.Array  # [batch, cache_length, heads, qk_dim], already transformed by `transform_qk`
  v: jax.Array  # [batch, cache_length, heads, head_dim]


LayerCache = KVCache | linear.LinearState  # one layer's decoding cache, whichever the attention implementation


def write_at(buffer: jax.Array, update: jax.Array, start: jax.Array) -> jax.Array:
  """Writes `update` [batch, t, ...] into `buffer` [batch, S, ...] at per-example offsets `start` [batch]."""
  def write_one(b, u, s):
    return jax.lax.dynamic_update_slice_in_dim(b, u.astype(b.dtype), s, axis=0)
  return jax.vmap(write_one)(buffer, update, start)


def linear_to_heads(d_model: int, num_heads: int, head_dim: int, *, use_bias: bool = False, dtype,
                    rngs: nnx.Rngs) -> nnx.LinearGeneral:
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "heads", "kv"))
  bias_init = nnx.with_partitioning(nnx.initializers.zeros, ("heads", "kv"))
  layer = nnx.LinearGeneral(d_model, (num_heads, head_dim), use_bias=use_bias, kernel_init=init,
                            bias_init=bias_init, dtype=dtype, rngs=rngs)
  if use_bias:  # a bias, though [heads, head_dim] is 2-D: weight decay would pull it toward 0 like a kernel
    layer.bias.set_metadata(**{decay.KEY: False})
  return layer


class LowRankToHeads(nnx.Module):
  """x [batch, length, d_model] → [batch, length, heads, head_dim] through a rank-`rank` bottleneck per head: each
  head's d_model × head_dim matrix is a (d_model × rank) · (rank × head_dim) product."""

  def __init__(self, d_model: int, num_heads: int, head_dim: int, rank: int, *, dtype, rngs: nnx.Rngs):
    self.down = linear_to_heads(d_model, num_heads, rank, dtype=dtype, rngs=rngs)
    up_init = nnx.with_partitioning(nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1), ("heads", None, "kv"))
    self.up = nnx.Param(up_init(rngs.params(), (num_heads, rank, head_dim)))  # [heads, rank, head_dim]
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.einsum("blhr,hrd->blhd", self.down(x), self.up[...].astype(self.dtype))


@dataclasses.dataclass(frozen=True)
class AttentionOptions:
  """How a self-attention layer attends — everything but its width, encoding, dtype and RNGs. Built from a model
  config by `zoo.models.backbone.attention_options`; see `SelfAttention` for what each option does."""

  num_heads: int
  head_dim: int
  causal: bool
  impl: str = "xla"  # a name from zoo.attention.available()
  feature_map: str = "favor"  # impl="linear"
  num_features: int = 256  # impl="linear", feature_map="favor"
  dropout_rate: float = 0.0  # attention dropout
  num_kv_heads: int | None = None  # grouped-query attention; None: num_heads
  qkv_bias: bool = False
  out_bias: bool = False
  scale_logits: bool = True  # q·kᵀ/√d (False: T5's unscaled logits)
  qk_rank: int | None = None
  logits: str = "content"  # "positional": no W_Q, W_K
  temperature: float = 1.0


class SelfAttention(nnx.Module):
  """Self-attention with the positional hooks. `impl="linear"` uses kernelized attention with `feature_map`
  ("favor": `num_features` random features redrawn at every training call from the "features" RNG stream and fixed
  in evaluation; "relu": deterministic). `qk_rank` factorises W_Q and W_K through a rank-`qk_rank` bottleneck;
  `logits="positional"` drops W_Q and W_K (queries and keys are zero, so the encoding's bias alone sets the
  attention); `temperature` divides q·kᵀ/√d.

  With `num_kv_heads` < `num_heads` (grouped-query attention) keys and values are projected to fewer heads and
  repeated right after the projection, so encodings, every core and the decoding cache see ordinary multi-head
  attention: the parameters shrink, the cache does not.
  """

  def __init__(self, d_model: int, options: AttentionOptions, *, encoding: PositionalEncoding, dtype=jnp.float32,
               rngs: nnx.Rngs):
    o = self.options = options
    num_heads, head_dim, qkv_bias = o.num_heads, o.head_dim, o.qkv_bias
    self.encoding = encoding
    self.dtype = dtype
    self.deterministic = False  # flipped by `model.eval()` / `model.train()`
    kv_heads = o.num_kv_heads or num_heads
    self.query = self.key = None  # logits="positional"
    if o.logits == "content" and o.qk_rank is None:
      self.query = nnx.data(linear_to_heads(d_model, num_heads, head_dim, use_bias=qkv_bias, dtype=dtype, rngs=rngs))
      self.key = nnx.data(linear_to_heads(d_model, kv_heads, head_dim, use_bias=qkv_bias, dtype=dtype, rngs=rngs))
    elif o.logits == "content":
      self.query = nnx.data(LowRankToHeads(d_model, num_heads, head_dim, o.qk_rank, dtype=dtype, rngs=rngs))
      self.key = nnx.data(LowRankToHeads(d_model, kv_heads, head_dim, o.qk_rank, dtype=dtype, rngs=rngs))
    self.value = linear_to_heads(d_model, kv_heads, head_dim, use_bias=qkv_bias, dtype=dtype, rngs=rngs)
    out_init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("heads", "kv", "embed"))
    out_bias_init = nnx.with_partitioning(nnx.initializers.zeros, ("embed",))
    self.out = nnx.LinearGeneral((num_heads, head_dim), d_model, axis=(-2, -1), use_bias=o.out_bias,
                                 kernel_init=out_init, bias_init=out_bias_init, dtype=dtype, rngs=rngs)
    self.dropout_rngs = rngs.dropout.fork() if o.dropout_rate > 0 else None
    self.is_linear = (o.impl != "auto" and core(o.impl).cache == "state")
    if self.is_linear:
      if o.feature_map not in linear.FEATURE_MAPS:
        raise ValueError(f"unknown feature_map {o.feature_map!r}; valid choices: {', '.join(linear.FEATURE_MAPS)}")
      self.feature_keys = linear.NoiseKeys("features", rngs) if o.feature_map == "favor" else None

  def qk_dim(self) -> int:
    """The feature size of queries and keys after `transform_qk` (SPE: its number of realizations)."""
    if not implements(self.encoding, "transform_qk"):
      return self.options.head_dim
    x = jax.ShapeDtypeStruct((1, 1, self.options.num_heads, self.options.head_dim), self.dtype)
    coords = Coordinates(jax.ShapeDtypeStruct((1, 1), jnp.int32))
    return nnx.eval_shape(lambda enc, x, c: enc.transform_qk(x, x, c, c)[1], self.encoding, x, coords).shape[-1]

  def init_cache(self, batch: int, cache_length: int) -> LayerCache:
    """An empty decoding cache: `cache_length` key/value slots (softmax) or the recurrent state (linear)."""
    if self.is_linear:
      features = self.options.num_features if self.options.feature_map == "favor" else self.qk_dim()
      return linear.LinearState.empty(batch, self.options.num_heads, features, self.options.head_dim)
    shape = (batch, cache_length, self.options.num_heads)
    return KVCache(k=jnp.zeros((*shape, self.qk_dim()), self.dtype),
                   v=jnp.zeros((*shape, self.options.head_dim), self.dtype))

  def __call__(
      self,
      x: jax.Array,  # [batch, length, d_model]
      coords: Coordinates,  # positions [batch, length] int (and the model's relation, if any)
      *,
      segment_ids: jax.Array | None = None,  # [batch, length] int (packed sequences)
      valid: jax.Array | None = None,  # [batch, length] bool; False marks padding
      cache: LayerCache | None = None,
      cache_index: jax.Array | None = None,  # [batch] int: where the new tokens go in a KV cache
  ) -> tuple[jax.Array, LayerCache | None]:
    v = self.value(x)  # [batch, length, kv heads, head_dim]
    if self.query is None:  # dot-product-free: the logits are the positional bias alone
      q, k = jnp.zeros(v.shape[:2] + (self.options.num_heads, v.shape[3]), v.dtype), jnp.zeros_like(v)
    else:
      q, k = self.query(x), self.key(x)  # q [batch, length, heads, head_dim]; k: kv heads
    repeats = self.options.num_heads // (self.options.num_kv_heads or self.options.num_heads)
    if repeats > 1:  # kv head j serves query heads j·repeats .. (j + 1)·repeats − 1
      k, v = (jnp.repeat(a, repeats, axis=2) for a in (k, v))  # [batch, length, heads, head_dim]
    if implements(self.encoding, "transform_qk"):
      q, k = self.encoding.transform_qk(q, k, coords, coords)  # [batch, length, heads, qk_dim]
    if cache is not None and segment_ids is not None:
      raise ValueError("cached decoding does not support segment_ids (packed sequences)")
    if coords.relation is not None and (cache is not None or self.is_linear):
      raise ValueError("a relation between tokens needs softmax attention without a decoding cache")
    attention = self.attend_linear if self.is_linear else self.attend_softmax
    out, cache = attention(q, k, v, coords, segment_ids=segment_ids, valid=valid, cache=cache,
                           cache_index=cache_index)
    return self.out(out), cache

  def softmax_scale(self, q: jax.Array) -> float:
    """1/(√(qk_dim) · temperature), or 1/temperature for unscaled logits."""
    return (q.shape[-1] ** -0.5 if self.options.scale_logits else 1.0) / self.options.temperature

  def attend_linear(self, q, k, v, coords, *, segment_ids, valid, cache, cache_index):
    """Kernelized attention; with a cache, a continuation of its recurrent state (positions follow the cache)."""
    del cache_index  # the state is a sum over the keys so far: it has no slots
    positions = coords.positions
    softmax_scale = self.softmax_scale(q)
    projection = None
    if self.feature_keys is not None:  # FAVOR+: one draw per call, shared by heads, fixed while deterministic
      projection = linear.orthogonal_random_features(self.feature_keys(), self.options.num_features, q.shape[-1])
    if cache is None:
      mask = AttentionMask(q_pos=positions, k_pos=positions, q_segment_ids=segment_ids, k_segment_ids=segment_ids,
                           k_valid=valid, causal=self.options.causal)
      out = attend(q, k, v, impl=self.options.impl, mask=mask, softmax_scale=softmax_scale,
                   feature_map=self.options.feature_map, projection=projection)
      return out, None
    q_features, k_log = linear.kernel_features(self.options.feature_map, q, k, softmax_scale=softmax_scale,
                                               projection=projection)
    out, cache = linear.causal_linear_attention(q_features, k_log, v, cache, k_valid=valid)
    return out.astype(v.dtype), cache

  def attend_softmax(self, q, k, v, coords, *, segment_ids, valid, cache, cache_index):
    """Attention through the dispatch (any implementation that serves the encoding's terms); a KV cache gets the
    new keys and values written at `cache_index` and the keys' coordinates are its slots."""
    q_coords = k_coords = coords
    q_pos = k_pos = coords.positions
    k_valid = valid
    if cache is not None:
      batch, cache_length = cache.k.shape[:2]
      k = write_at(cache.k, k, cache_index)
      v = write_at(cache.v, v, cache_index)
      cache = KVCache(k=k, v=v)
      slots = jnp.arange(cache_length)
      k_pos = jnp.broadcast_to(slots, (batch, cache_length))
      new_valid = jnp.ones(q_pos.shape, bool) if valid is None else valid
      k_valid = (slots < cache_index[:, None]) | write_at(jnp.zeros((batch, cache_length), bool), new_valid,
                                                         cache_index)
      k_coords = Coordinates(k_pos)
    mask = AttentionMask(q_pos=q_pos, k_pos=k_pos, q_segment_ids=segment_ids, k_segment_ids=segment_ids,
                         k_valid=k_valid, causal=self.options.causal)
    bias, scale = attention_terms(self.encoding, q_coords, k_coords)
    use_dropout = self.options.dropout_rate > 0 and not self.deterministic
    out = attend(q, k, v, impl=self.options.impl, mask=mask, bias=bias, scale=scale,
                 softmax_scale=self.softmax_scale(q), dropout_rate=self.options.dropout_rate if use_dropout else 0.0,
                 dropout_rng=self.dropout_rngs() if use_dropout else None)
    return out, cache
