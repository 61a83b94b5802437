"""Multi-head self-attention that consults the positional-encoding hooks: project → transform_qk → core → out.

The module projects q, k, v, lets the encoding transform them (`transform_qk`), asks it for structured logit biases
(`logit_bias`) and a post-softmax scale (`prob_scale`), and hands everything to the attention core its options name
(`zoo.attention.cores`). It never looks at which encoding or which core is active: the decoding cache is the core's
(`init_cache`; keys and values of the kv heads, or linear attention's recurrent state), passed around unopened. An
encoding whose transform is relative to the call (`transform_per_call`, xPos) is handed to the core as a `transform`
instead, which the core applies after the cache append, to the new queries and every key.

`compatible(pe, impl)` is the one answer to "can this core serve this encoding": model validation, experiments and
tests ask it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx
from flax.core import FrozenDict

from zoo import attention, decay, positional
from zoo.attention import AttentionMask, Core, Terms, linear
from zoo.config import check, from_options
from zoo.nn.context import CallContext
from zoo.positional import Coordinates, PositionalEncoding, attention_terms, implements

LayerCache = attention.KVCache | linear.LinearState  # one layer's decoding cache, whatever its core keeps


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
class AttentionConfig:
  """How a self-attention layer attends — everything but its width, causality (the family's), encoding, dtype and
  RNGs; a model config's `attention` section, taken as it is by `SelfAttention`. Messages name the keys a person
  sets (`model.attention.<field>`)."""

  num_heads: int = 4
  head_dim: int | None = None  # None: d_model // num_heads (`resolved_head_dim`)
  # Grouped-query attention (Ainslie et al. 2023): num_heads / num_kv_heads query heads share each key/value head.
  num_kv_heads: int | None = None  # None: num_heads (multi-head attention)
  impl: str = "xla"  # a name from zoo.attention.available()
  # The core's own options, validated by its `Options` (linear: feature_map, num_features; pallas: block sizes).
  core: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  dropout: float = 0.0  # on the attention matrix
  # Biases the pretrained families carry (GPT-2 / BERT: all; Qwen2: q, k, v only); zoo's own models have none.
  qkv_bias: bool = False
  out_bias: bool = False  # the output projection
  scale_logits: bool = True  # q·k / √d; False: unscaled logits (T5 folds the scale into its initialisation)
  # W_Q, W_K of each head factorised d_model × qk_rank · qk_rank × head_dim, so q·kᵀ has rank <= qk_rank (Kajitsuka &
  # Sato's rank-1 attention is qk_rank=1); None: full rank.
  qk_rank: int | None = None
  # content: logits q·kᵀ/√d + positional bias; positional: the bias alone, no query or key projection (Wang & E's
  # dot-product-free attention).
  logits: Literal["content", "positional"] = "content"
  temperature: float = 1.0  # divides q·kᵀ/√d (not the bias): → 0 approaches hardmax attention
  # Sliding-window attention (Mistral's `sliding_window`): a query sees the `window` latest positions, its own
  # included (`zoo.attention.masks`); a causal family only. The KV cache then keeps min(window, length) slots.
  window: int | None = None
  # The attention weights' rule (`zoo.attention.reference.WEIGHTS`): softmax; hardmax (one-hot on each query's first
  # largest logit, softmax's gradient in the backward: straight-through); uniform (1/|visible keys| each, q and k
  # unread); none (all 0: the layer adds nothing, an FFN-only model). The controls of the memorization study.
  weights: Literal["softmax", "hardmax", "uniform", "none"] = "softmax"

  def __post_init__(self):
    check(self.num_heads >= 1, f"model.attention: num_heads must be >= 1, got {self.num_heads}")
    check(self.head_dim is None or self.head_dim >= 1,
          f"model.attention: head_dim must be None (derived) or >= 1, got {self.head_dim}")
    check(self.num_kv_heads is None or (self.num_kv_heads >= 1 and self.num_heads % self.num_kv_heads == 0),
          f"model.attention: num_kv_heads ({self.num_kv_heads}) must divide num_heads ({self.num_heads})")
    check(0.0 <= self.dropout < 1.0, f"model.attention: dropout must be in [0, 1), got {self.dropout}")
    check(self.temperature > 0, f"model.attention: temperature must be > 0, got {self.temperature}")
    check(self.qk_rank is None or self.qk_rank >= 1,
          f"model.attention: qk_rank must be None (full rank) or >= 1, got {self.qk_rank}")
    check(self.qk_rank is None or self.logits == "content",
          "model.attention: qk_rank needs logits='content' (positional logits have no W_Q, W_K)")
    check(self.window is None or self.window >= 1,
          f"model.attention: window must be None (no window) or >= 1, got {self.window}")
    cls = attention.core_class(self.impl)
    from_options(cls.Options, self.core, what=f"model.attention.core (impl={self.impl!r})")
    object.__setattr__(self, "core", FrozenDict(self.core))  # hashable, so the model can be static
    serving = [name for name, c in sorted(attention.CORES.items()) if c.dropout]
    check(self.dropout == 0.0 or cls.dropout,
          f"model.attention: dropout needs the attention matrix, which impl={self.impl!r} does not drop out of; it "
          f"must be 0, or impl {' or '.join(map(repr, serving))}")
    check(self.weights in cls.weights,
          f"model.attention: weights={self.weights!r} needs impl "
          f"{' or '.join(map(repr, attention.cores_serving(weights=self.weights)))}; impl={self.impl!r} computes "
          f"{' / '.join(cls.weights)} weights only")

  def resolved_head_dim(self, d_model: int) -> int:
    return self.head_dim or d_model // self.num_heads

  @property
  def resolved_kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  def build_core(self) -> Core:
    return attention.build(self.impl, self.core)


class SelfAttention(nnx.Module):
  """Self-attention with the positional hooks, as `config` (a model's `attention` section) describes it; `causal`
  is the family's. The core is `config.build_core()` (for linear attention, "favor" draws
  `num_features` random features at every training call from the "features" RNG stream, fixed in evaluation).
  `qk_rank` factorises W_Q and W_K through a rank-`qk_rank` bottleneck; `logits="positional"` drops W_Q and W_K
  (queries and keys are zero, so the encoding's bias alone sets the attention); `temperature` divides q·kᵀ/√d;
  `weights` picks the rule that turns the logits into attention weights (softmax, or a control).

  With `num_kv_heads` < `num_heads` (grouped-query attention) keys and values are projected to fewer heads and stay
  so into the core and its cache (the core maps query head h to kv head h // (num_heads / num_kv_heads)). An encoding
  with per-head state (parameters on the "heads" axis: SPE) transforms the keys of every query head differently, so
  its keys are repeated to `num_heads` before `transform_qk`; per-position transforms (RoPE) keep the kv heads.
  """

  def __init__(self, d_model: int, config: AttentionConfig, *, causal: bool, encoding: PositionalEncoding,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.config, self.causal = config, causal
    num_heads, head_dim, kv_heads = config.num_heads, config.resolved_head_dim(d_model), config.resolved_kv_heads
    self.head_dim = head_dim
    self.encoding = encoding
    self.dtype = dtype
    self.deterministic = False  # flipped by `model.eval()` / `model.train()`
    self.core = config.build_core()
    to_heads = lambda heads, use_bias: linear_to_heads(d_model, heads, head_dim, use_bias=use_bias, dtype=dtype,
                                                       rngs=rngs)
    self.query = self.key = None  # logits="positional"
    if config.logits == "content" and config.qk_rank is None:
      self.query = nnx.data(to_heads(num_heads, config.qkv_bias))
      self.key = nnx.data(to_heads(kv_heads, config.qkv_bias))
    elif config.logits == "content":
      self.query = nnx.data(LowRankToHeads(d_model, num_heads, head_dim, config.qk_rank, dtype=dtype, rngs=rngs))
      self.key = nnx.data(LowRankToHeads(d_model, kv_heads, head_dim, config.qk_rank, dtype=dtype, rngs=rngs))
    self.value = to_heads(kv_heads, config.qkv_bias)
    out_init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("heads", "kv", "embed"))
    out_bias_init = nnx.with_partitioning(nnx.initializers.zeros, ("embed",))
    self.out = nnx.LinearGeneral((num_heads, head_dim), d_model, axis=(-2, -1), use_bias=config.out_bias,
                                 kernel_init=out_init, bias_init=out_bias_init, dtype=dtype, rngs=rngs)
    self.dropout_rngs = rngs.dropout.fork() if config.dropout > 0 else None
    self.feature_keys = linear.NoiseKeys(self.core.noise, rngs) if self.core.noise else None  # the core's stream
    self.keys_per_head = implements(encoding, "transform_qk") and has_per_head_state(encoding)

  def qk_dim(self) -> int:
    """The feature size of queries and keys after `transform_qk` (SPE: its number of realizations)."""
    if not implements(self.encoding, "transform_qk"):
      return self.head_dim
    x = jax.ShapeDtypeStruct((1, 1, self.config.num_heads, self.head_dim), self.dtype)
    coords = Coordinates(jax.ShapeDtypeStruct((1, 1), jnp.int32))
    return nnx.eval_shape(lambda enc, x, c: enc.transform_qk(x, x, c, c)[1], self.encoding, x, coords).shape[-1]

  def init_cache(self, batch: int, cache_length: int) -> LayerCache:
    """An empty decoding cache of the core for `batch` sequences of up to `cache_length` tokens (with a window: of
    the last `window` of them)."""
    c = self.config
    kv_heads = c.num_heads if self.keys_per_head else c.resolved_kv_heads
    qk_dim = self.head_dim if self.encoding.transform_per_call else self.qk_dim()  # keys as projected, or transformed
    return self.core.init_cache(batch, cache_length, heads=c.num_heads, kv_heads=kv_heads, qk_dim=qk_dim,
                                v_dim=self.head_dim, dtype=self.dtype, window=c.window,
                                sums=self.encoding.cached_sums)

  def __call__(
      self,
      x: jax.Array,  # [batch, length, d_model]
      context: CallContext,  # positions (and relation), segment ids, validity
      *,
      cache: LayerCache | None = None,  # the new tokens go in after the cached ones
  ) -> tuple[jax.Array, LayerCache | None]:
    c = self.config
    v = self.value(x)  # [batch, length, kv heads, head_dim]
    if self.query is None:  # dot-product-free: the logits are the positional bias alone
      q, k = jnp.zeros(v.shape[:2] + (c.num_heads, v.shape[3]), v.dtype), jnp.zeros_like(v)
    else:
      q, k = self.query(x), self.key(x)  # q [batch, length, heads, head_dim]; k: kv heads
    if self.keys_per_head:
      k, v = attention.cores.repeat_kv(k, c.num_heads), attention.cores.repeat_kv(v, c.num_heads)
    coords = context.coords
    transform = None
    if implements(self.encoding, "transform_qk") and self.encoding.transform_per_call:
      transform = functools.partial(transform_at, self.encoding, coords.relation)  # the core applies it, to every key
    elif implements(self.encoding, "transform_qk"):
      q, k = self.encoding.transform_qk(q, k, coords, coords)  # [batch, length, heads or kv heads, qk_dim]
    if coords.relation is not None and cache is not None:
      raise ValueError("a relation between tokens needs attention without a decoding cache")
    positions = coords.positions
    mask = AttentionMask(q_pos=positions, k_pos=positions, q_segment_ids=context.segment_ids,
                         k_segment_ids=context.segment_ids, k_valid=context.valid, causal=self.causal,
                         window=c.window)
    # Terms are evaluated at the core's mask positions (with a cache: its slots), so the new tokens' coordinates
    # describe them whatever the cache holds; a term of the tokens themselves reads them from `features`.
    coords = coords.replace(features=x)
    terms = Terms(*attention_terms(self.encoding, coords, coords))
    use_dropout = c.dropout > 0 and not self.deterministic
    out, cache = self.core(q, k, v, terms, mask, cache, softmax_scale=self.softmax_scale(q),
                           dropout_rate=c.dropout if use_dropout else 0.0,
                           dropout_rng=self.dropout_rngs() if use_dropout else None,
                           noise=None if self.feature_keys is None else self.feature_keys(), transform=transform,
                           weights=c.weights)
    return self.out(out), cache

  def softmax_scale(self, q: jax.Array) -> float:
    """1/(√(qk_dim) · temperature), or 1/temperature for unscaled logits."""
    return (q.shape[-1] ** -0.5 if self.config.scale_logits else 1.0) / self.config.temperature


def transform_at(encoding: PositionalEncoding, relation: Any, q: jax.Array, k: jax.Array, q_pos: jax.Array,
                 k_pos: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`encoding.transform_qk` at explicit positions: the per-call transform a core applies (`cores.Transform`)."""
  return encoding.transform_qk(q, k, Coordinates(q_pos, relation), Coordinates(k_pos, relation))


def has_per_head_state(encoding: PositionalEncoding) -> bool:
  """Whether the encoding holds a variable on the "heads" axis (then each query head needs keys of its own)."""
  return any("heads" in (node.get_metadata().get("out_sharding") or ())
             for _, node in nnx.iter_graph(encoding) if isinstance(node, nnx.Variable))


def compatible(pe: str, impl: str, pe_options: Mapping[str, Any] | None = None, *, relation: bool = False) -> bool:
  """Whether attention core `impl` serves every term encoding `pe` (with `pe_options`) gives the attention, in a
  model whose tokens have a relation (a graph) or not (a sequence)."""
  return not refused_hooks(pe, impl, pe_options, relation=relation)


def refused_hooks(pe: str, impl: str, pe_options: Mapping[str, Any] | None = None, *,
                  relation: bool = False) -> dict[str, str]:
  """hook -> why core `impl` cannot serve the terms that hook of encoding `pe` gives (empty: it serves them all)."""
  core = attention.core_class(impl)
  refused = {}
  if positional.get(pe).transform_per_call and (reason := core.refusal(transform=True)):
    refused["transform_qk"] = reason
  for hook, types in hook_term_types(pe, _hashable(pe_options), relation).items():
    for t in types:
      if not issubclass(t, core.terms):
        refused.setdefault(hook, f"cannot evaluate a {t.__name__} term")
  return refused


def incompatibility(pe: str, impl: str, pe_options: Mapping[str, Any] | None = None, *,
                    relation: bool = False) -> str | None:
  """Why core `impl` cannot serve encoding `pe`, in one line naming the hooks, the cores that serve it and the
  encodings `impl` serves; None when it can. Unknown names and options fail with their own errors."""
  refused = refused_hooks(pe, impl, pe_options, relation=relation)
  if not refused:
    return None
  serving = [name for name in sorted(attention.CORES) if compatible(pe, name, pe_options, relation=relation)]
  works = [name for name in positional.available() if compatible(name, impl, relation=relation)]
  return (f"positional encoding {pe!r} uses the {' and '.join(refused)} hook, which attention.impl={impl!r} cannot "
          f"apply ({next(iter(refused.values()))}); attention.impl must be {' or '.join(map(repr, serving))} for "
          f"it, or positional.name one that attention.impl={impl!r} serves: {', '.join(works)}")


def _hashable(options: Mapping[str, Any] | None) -> tuple:
  return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (options or {}).items()))


@functools.cache
def hook_term_types(pe: str, pe_options: tuple, relation: bool) -> dict[str, tuple[type, ...]]:
  """The term types each of the encoding's `logit_bias` / `prob_scale` hooks gives the attention, read by building
  it abstractly (shapes only) for a small model; with `relation`, a graph encoding is given a graph with an edge
  bias (on a sequence it reads lags)."""
  found = {}

  def probe():
    dims = positional.ModelDims(num_heads=2, head_dim=8, d_model=16, max_length=64, causal=False)
    with nnx.use_eager_sharding(False):
      encoding = positional.build(pe, dict(pe_options), dims, rngs=nnx.Rngs(0))
    positions = jnp.zeros((1, 4), jnp.int32)
    graph = None
    if relation and positional.get(pe).reads_relation:
      graph = positional.graph.Graph(spd=jnp.zeros((1, 4, 4), jnp.int32), in_degree=positions, out_degree=positions,
                                  edge_bias=jnp.zeros((1, 2, 4, 4)))
    coords = Coordinates(positions, graph, features=jnp.zeros((1, 4, dims.d_model)))
    bias, scale = attention_terms(encoding, coords, coords)
    if bias:
      found["logit_bias"] = tuple(type(t) for t in bias)
    if scale is not None:
      found["prob_scale"] = (type(scale),)
    return 0

  jax.eval_shape(probe)
  return found
