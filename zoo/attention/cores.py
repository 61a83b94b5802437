"""Attention cores as registered objects, chosen by name, so models say *what* to compute and configs say *how*.

A core is one attention implementation behind one call, `core(q, k, v, terms, mask, cache) -> (out, cache)`: q
[batch, q_len, heads, qk_dim], k [batch, k_len, kv_heads, qk_dim], v [batch, k_len, kv_heads, v_dim], the structured
bias / scale `Terms` (`zoo.attention.bias`), an `AttentionMask`, and the decoding cache from its own `init_cache` (or
None for a whole sequence) — prefill and decode steps go through the same call. Each core class declares what it
serves: the term types it evaluates, whether it has attention dropout and packed-segment masks, the weight rules it
computes (softmax, or also the controls of `reference.WEIGHTS`), and the RNG stream it draws from per call
(`noise`); `refusal` turns a request it does not serve into a ValueError naming the cores that do. Tests, `auto`
and model validation (`zoo.nn.attention.compatible`) choose by these declarations, never by name lists. Each core
has an `Options` dataclass of its own knobs (tile sizes, feature map), validated by `zoo.config.from_options`.

Grouped-query attention lives here: keys and values come with `kv_heads` heads (a divisor of `heads`), the KV cache
keeps only those, and query head h reads kv head h // (heads / kv_heads) — in the kernels' index maps and in grouped
contractions (`zoo.attention.grouped`), never through a repeated copy.

* "xla" — the reference: dense logits, O(L²) memory, every term type, the only one with attention dropout and with
  weights other than softmax (hardmax, uniform, none).
* "chunked" — blockwise online softmax in XLA loops, O(L) memory (plus a relation's own O(L²) array); every term type.
* "pallas" — fused flash kernels (Mosaic on TPU, Triton on GPU, the interpreter on CPU), `KernelTerm`s and
  `TokenCumulative`s in-kernel.
* "linear" — kernelized attention (Performer FAVOR+ or ReLU features), O(L) time and memory, for SPE; serves no
  term and keeps a recurrent state instead of keys and values when decoding (so no per-call transform either: xPos)
  — with a sliding window, the window's keys and values.
* "auto" — the safe choice per call (MaxText's `attention=autoselected` habit), resolved in `auto_choice` only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from zoo import sharding
from zoo.attention import linear
from zoo.attention.bias import KernelTerm, Term, TokenCumulative
from zoo.attention.chunked import chunked_attention
from zoo.attention.masks import AttentionMask
from zoo.attention.pallas import flash_attention
from zoo.attention.pallas.kernels import BACKENDS
from zoo.attention.reference import WEIGHTS, reference_attention
from zoo.config import check, from_options

# On CPU, "auto" stays dense up to this many logits per (example, head): 2048 × 2048 is 16 MiB of float32.
AUTO_DENSE_MAX_ELEMENTS = 2048 * 2048


class Terms(NamedTuple):
  """What the positional encoding adds to the attention: logit-bias terms and a post-softmax scale."""

  bias: tuple[Term, ...] = ()
  scale: Term | None = None


# A per-call transform of queries and keys (an encoding's `transform_qk` with `transform_per_call`): (q, k, q_pos
# [batch, q_len], k_pos [batch, k_len]) -> (q, k). The core applies it after the cache append, to every key.
Transform = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@struct.dataclass
class KVCache:
  """One softmax-attention layer's keys and values for cached decoding, the position of the token in each slot (the
  decoder writes position s into slot s; explicit positions go where the tokens go), the next slot to write, and the
  running sum of each slot's token for every `TokenCumulative` term of the layer (FoX: the forget gates' Σ log f).

  A sliding-window layer keeps only its window (`ring`): `window` slots written round, token n of a sequence into
  slot n mod window. Slots keep their positions, so the mask stays position based."""

  k: jax.Array  # [batch, slots, kv_heads, qk_dim]: transformed by `transform_qk` unless it is per call
  v: jax.Array  # [batch, slots, kv_heads, v_dim]
  positions: jax.Array  # [batch, slots] int32; 0 in unwritten slots
  index: jax.Array  # [batch] int32: how many tokens of each sequence were written (ring: modulo slots, the next slot)
  sums: tuple[jax.Array, ...] = ()  # [batch, slots, heads] float32 per `TokenCumulative` bias term, in order
  ring: bool = struct.field(pytree_node=False, default=False)

  def append(self, k: jax.Array, v: jax.Array, mask: AttentionMask,
             terms: Terms) -> tuple[KVCache, jax.Array, jax.Array, AttentionMask, Terms]:
    """The cache with the new keys and values [batch, t, kv_heads, ...] and their positions (`mask.k_pos`) written
    (the valid ones kept: right-padded tokens are overwritten by the next call); the keys and values the new queries
    attend to, `mask`'s key side moved onto those keys (their positions, valid where written), and `terms` on them
    too: each `TokenCumulative` continued from the cached running sums, which it extends.

    A plain cache is written from slot `index` on and attended whole. A ring is attended as it was before the call,
    followed by the call's own keys (a prefill longer than the window still sees all of its keys), and keeps the
    last `slots` valid ones."""
    if mask.q_segment_ids is not None:
      raise ValueError("cached decoding does not support segment_ids (packed sequences)")
    cumulative = [i for i, term in enumerate(terms.bias) if isinstance(term, TokenCumulative)]
    if len(cumulative) != len(self.sums):
      raise ValueError(f"the decoding cache keeps {len(self.sums)} running sums, but the layer's terms have "
                       f"{len(cumulative)} TokenCumulative terms")
    slots, t = self.k.shape[1], k.shape[1]
    new_valid = jnp.ones(mask.k_pos.shape, bool) if mask.k_valid is None else mask.k_valid  # [batch, t]
    count = new_valid.sum(axis=1, dtype=jnp.int32)
    if self.ring:
      # The valid tokens lead (right padding): the last `slots` of them go to slots index + j mod slots, the others
      # to slot `slots`, out of range, which the scatter drops.
      step = jnp.arange(t)
      target = jnp.where(new_valid & (step >= count[:, None] - slots), (self.index[:, None] + step) % slots, slots)
      scatter = jax.vmap(lambda buffer, update, at: buffer.at[at].set(update.astype(buffer.dtype), mode="drop"))

      def put(old, new):  # -> (what the cache keeps, what the call attends to)
        return scatter(old, new, target), jnp.concatenate([old, new.astype(old.dtype)], axis=1)
    else:
      def put(old, new):
        kept = write_at(old, new, self.index)
        return kept, kept
    (k_kept, k), (v_kept, v), (positions, k_pos) = put(self.k, k), put(self.v, v), put(self.positions, mask.k_pos)
    _, k_valid = put(jnp.arange(slots) < self.index[:, None], new_valid)
    last = (self.index - 1) % slots  # the last written token's slot (a plain cache's index never passes its slots)
    bias, sums = list(terms.bias), []
    for i, stored in zip(cumulative, self.sums):
      # The call's running sums start from 0 (its own tokens): they continue from the last written token's.
      previous = jnp.take_along_axis(stored, last[:, None, None], axis=1)[:, 0]  # [batch, heads]
      offset = jnp.where(self.index[:, None] > 0, previous, 0.0)[:, :, None]  # [batch, heads, 1]
      kept, attended = put(stored, (bias[i].k_sum + offset).swapaxes(1, 2))  # [batch, slots (+ t), heads]
      bias[i] = TokenCumulative(q_sum=bias[i].q_sum + offset, k_sum=attended.swapaxes(1, 2))
      sums.append(kept)
    cache = self.replace(k=k_kept, v=v_kept, positions=positions, index=self.index + count, sums=tuple(sums))
    return cache, k, v, mask.replace(k_pos=k_pos, k_valid=k_valid), terms._replace(bias=tuple(bias))


def write_at(buffer: jax.Array, update: jax.Array, start: jax.Array) -> jax.Array:
  """Writes `update` [batch, t, ...] into `buffer` [batch, S, ...] at per-example offsets `start` [batch]."""
  def write_one(b, u, s):
    return jax.lax.dynamic_update_slice_in_dim(b, u.astype(b.dtype), s, axis=0)
  return jax.vmap(write_one)(buffer, update, start)


def repeat_kv(x: jax.Array, heads: int) -> jax.Array:
  """[batch, length, kv_heads, dim] -> [batch, length, heads, dim]: head h is kv head h // (heads / kv_heads)."""
  repeats = heads // x.shape[2]
  return x if repeats == 1 else jnp.repeat(x, repeats, axis=2)


@dataclasses.dataclass(frozen=True)
class NoOptions:
  """A core without options."""


@dataclasses.dataclass(frozen=True)
class Core:
  """An attention core: its options (an instance of `Options`) and its declarations (class attributes)."""

  options: Any = None
  Options: ClassVar[type] = NoOptions
  terms: ClassVar[tuple[type[Term], ...]] = (Term,)  # the term types it evaluates (as logit bias and as scale)
  dropout: ClassVar[bool] = False  # attention dropout
  segments: ClassVar[bool] = True  # packed-sequence (segment id) masks
  # A per-call `transform` of the queries and every key, cached ones too (an encoding's `transform_per_call`).
  per_call_transforms: ClassVar[bool] = True
  weights: ClassVar[tuple[str, ...]] = ("softmax",)  # the weight rules it computes (names from `reference.WEIGHTS`)

  def __post_init__(self):
    object.__setattr__(self, "options", from_options(self.Options, self.options, what=f"attention core {self.name!r}"))

  @property
  def name(self) -> str:
    return next(name for name, cls in REGISTRY.items() if cls is type(self))

  @property
  def noise(self) -> str | None:
    """The RNG stream it draws from at every call (a `linear.NoiseKeys` the caller keeps), or None."""
    return None

  @classmethod
  def serves(cls, term: Term) -> bool:
    return isinstance(term, cls.terms)

  @classmethod
  def refusal(cls, bias: Sequence[Term] = (), scale: Term | None = None, dropout_rate: float = 0.0,
              transform: bool = False, weights: str = "softmax") -> str | None:
    """Why this core cannot serve the request (with `transform`: a per-call transform of every key), or None."""
    if weights not in cls.weights:
      return f"computes {' / '.join(cls.weights)} attention weights only (got weights={weights!r})"
    if transform and not cls.per_call_transforms:
      return "cannot transform every key at each call"
    if dropout_rate > 0.0 and not cls.dropout:
      return f"has no attention dropout (got dropout_rate={dropout_rate})"
    for term in (*bias, *([] if scale is None else [scale])):
      if not cls.serves(term):
        return f"cannot evaluate a {type(term).__name__} term"
    return None

  def check(self, terms: Terms, dropout_rate: float, transform: Transform | None = None,
            weights: str = "softmax") -> None:
    reason = self.refusal(terms.bias, terms.scale, dropout_rate, transform is not None, weights)
    if reason is not None:
      serving = " or ".join(map(repr, cores_serving(terms.bias, terms.scale, dropout_rate, transform is not None,
                                                    weights)))
      raise ValueError(f"attention impl {self.name!r} {reason}; use impl={serving}")

  def init_cache(self, batch: int, cache_length: int, *, heads: int, kv_heads: int, qk_dim: int, v_dim: int,
                 dtype, window: int | None = None, sums: int = 0) -> Any:
    """An empty decoding cache for `batch` sequences of up to `cache_length` tokens: `cache_length` slots of keys
    and values, kv heads only, and of `sums` running sums per query head (one per `TokenCumulative` term); a layer
    with a shorter sliding `window` keeps a ring of `window` slots."""
    ring = window is not None and window < cache_length
    shape = (batch, window if ring else cache_length, kv_heads)
    return KVCache(k=jnp.zeros((*shape, qk_dim), dtype), v=jnp.zeros((*shape, v_dim), dtype),
                   positions=jnp.zeros(shape[:2], jnp.int32), index=jnp.zeros((batch,), jnp.int32),
                   sums=tuple(jnp.zeros((*shape[:2], heads), jnp.float32) for _ in range(sums)), ring=ring)

  def __call__(
      self,
      q: jax.Array,  # [batch, q_len, heads, qk_dim]
      k: jax.Array,  # [batch, q_len, kv_heads, qk_dim]
      v: jax.Array,  # [batch, q_len, kv_heads, v_dim]
      terms: Terms,
      mask: AttentionMask,
      cache: Any = None,  # from `init_cache`: the new keys are appended after the cached ones and attend with them
      *,
      softmax_scale: float | None = None,  # default 1/√qk_dim
      dropout_rate: float = 0.0,
      dropout_rng: jax.Array | None = None,
      noise: jax.Array | None = None,  # a key from the stream `self.noise` names
      transform: Transform | None = None,  # applied to q and every key (cached ones too) at the mask's positions
      weights: str = "softmax",  # the weight rule, one of the core's `weights`
  ) -> tuple[jax.Array, Any]:  # [batch, q_len, heads, v_dim], the cache after these tokens
    del noise
    self.check(terms, dropout_rate, transform, weights)
    if cache is not None:
      cache, k, v, mask, terms = cache.append(k, v, mask, terms)
    if transform is not None:
      q, k = transform(q, k, mask.q_pos, mask.k_pos)
    out = self.attend(q, k, v, mask=mask, bias=terms.bias, scale=terms.scale, softmax_scale=softmax_scale,
                      dropout_rate=dropout_rate, dropout_rng=dropout_rng, weights=weights)
    return out, cache

  def attend(self, q, k, v, *, weights: str = "softmax", **kwargs) -> jax.Array:
    """Attention with one of the core's weight rules, k and v with kv heads (`reference_attention`'s arguments)."""
    raise NotImplementedError


REGISTRY: dict[str, type[Core]] = {}  # every name a config may give, "auto" included


def register(name: str):
  def add(cls: type[Core]) -> type[Core]:
    REGISTRY[name] = cls
    return cls
  return add


@register("xla")
class Xla(Core):
  dropout: ClassVar[bool] = True
  weights: ClassVar[tuple[str, ...]] = tuple(WEIGHTS)

  def attend(self, q, k, v, **kwargs):
    return reference_attention(q, k, v, **kwargs)


@dataclasses.dataclass(frozen=True)
class ChunkedOptions:
  chunk_q: int = 512  # query rows per block
  chunk_k: int = 512  # key columns per block

  def __post_init__(self):
    check(min(self.chunk_q, self.chunk_k) >= 1, f"attention core 'chunked': chunks must be >= 1, got {self}")


@register("chunked")
class Chunked(Core):
  Options: ClassVar[type] = ChunkedOptions

  def attend(self, q, k, v, *, weights="softmax", **kwargs):
    del weights  # softmax, the one rule it declares (`check` refused any other)
    return chunked_attention(q, k, v, **kwargs, **dataclasses.asdict(self.options))


@dataclasses.dataclass(frozen=True)
class PallasOptions:
  """See `flash_attention`: tile sizes, the kernel backend and the interpreter (defaults: from the target)."""

  block_q: int = 128
  block_k: int = 128
  backend: Literal[BACKENDS] | None = None
  interpret: bool | None = None

  def __post_init__(self):
    check(min(self.block_q, self.block_k) >= 1, f"attention core 'pallas': blocks must be >= 1, got {self}")


@register("pallas")
class Pallas(Core):
  Options: ClassVar[type] = PallasOptions
  terms: ClassVar[tuple[type[Term], ...]] = (KernelTerm, TokenCumulative)

  def attend(self, q, k, v, *, weights="softmax", **kwargs):
    del weights  # softmax, the one rule it declares (`check` refused any other)
    return flash_attention(q, k, v, **kwargs, **dataclasses.asdict(self.options))


@dataclasses.dataclass(frozen=True)
class LinearOptions:
  feature_map: Literal[linear.FEATURE_MAPS] = "favor"  # Performer FAVOR+ or relu + 1e-3
  num_features: int = 256  # FAVOR+ random features, redrawn at every training call and fixed in evaluation

  def __post_init__(self):
    check(self.num_features >= 1, f"attention core 'linear': num_features must be >= 1, got {self.num_features}")


@register("linear")
class Linear(Core):
  """Causal attention by prefix sums over a recurrent state (`linear.LinearState`, which is also its decoding
  cache: O(features · v_dim) per kv head whatever the prefix length), non-causal by contracting keys first. With a
  sliding window, from the window's keys themselves (`linear.windowed_linear_attention`; a state cannot forget the
  keys that leave the window), whose decoding cache is a ring of the window's keys and values like softmax
  attention's. Segment masks are not served; FAVOR+ draws its projection from the "features" stream at every call."""

  Options: ClassVar[type] = LinearOptions
  terms: ClassVar[tuple[type[Term], ...]] = ()
  segments: ClassVar[bool] = False
  per_call_transforms: ClassVar[bool] = False  # its state sums features of keys already transformed

  @property
  def noise(self) -> str | None:
    return "features" if self.options.feature_map == "favor" else None

  def init_cache(self, batch, cache_length, *, heads, kv_heads, qk_dim, v_dim, dtype, window=None, sums=0):
    if window is not None:  # a ring of min(window, cache_length) slots, the call's keys always after it
      return super().init_cache(batch, min(window, cache_length), heads=heads, kv_heads=kv_heads, qk_dim=qk_dim,
                                v_dim=v_dim, dtype=dtype).replace(ring=True)
    del cache_length, heads, dtype, sums  # the state is a sum over the keys so far: it has no slots; no term served
    features = self.options.num_features if self.options.feature_map == "favor" else qk_dim
    return linear.LinearState.empty(batch, kv_heads, features, v_dim)

  def __call__(self, q, k, v, terms, mask, cache=None, *, softmax_scale=None, dropout_rate=0.0, dropout_rng=None,
               noise=None, transform=None, weights="softmax"):
    del dropout_rng
    self.check(terms, dropout_rate, transform, weights)
    if mask.q_segment_ids is not None or mask.k_segment_ids is not None:
      raise ValueError("linear attention does not support segment_ids (packed sequences)")
    if mask.window is not None and cache is not None:  # the ring's keys, then the call's
      cache, k, v, mask, terms = cache.append(k, v, mask, terms)
    softmax_scale = q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
    projection = None
    if self.noise is not None:  # FAVOR+: one draw per call, shared by heads
      if noise is None:
        raise ValueError(f"linear attention with feature_map='favor' needs a key from the {self.noise!r} stream")
      projection = linear.orthogonal_random_features(noise, self.options.num_features, q.shape[-1])
    q_features, k_log = linear.kernel_features(self.options.feature_map, q, k, softmax_scale=softmax_scale,
                                               projection=projection)
    if mask.window is not None:
      out = linear.windowed_linear_attention(q_features, k_log, v, mask)
    elif cache is None:
      out = linear.linear_attention(q_features, k_log, v, causal=mask.causal, k_valid=mask.k_valid)
    else:  # a continuation of the recurrent state: the new tokens follow the cached ones
      out, cache = linear.causal_linear_attention(q_features, k_log, v, cache, k_valid=mask.k_valid)
    return out.astype(v.dtype), cache


@register("auto")
class Auto(Core):
  """Resolves to a softmax core per call (`auto_choice`); declares what its candidates serve together."""

  dropout: ClassVar[bool] = True

  def __call__(self, q, k, v, terms, mask, cache=None, **kwargs):
    k_len = k.shape[1] if cache is None else cache.k.shape[1] + (q.shape[1] if cache.ring else 0)
    choice = auto_choice(q.shape[1], k_len, kwargs.get("dropout_rate", 0.0), terms=(*terms.bias, *(
        [] if terms.scale is None else [terms.scale])))
    return build(choice)(q, k, v, terms, mask, cache, **kwargs)


CORES: dict[str, type[Core]] = {name: cls for name, cls in REGISTRY.items() if cls is not Auto}  # concrete ones


def auto_choice(q_len: int, k_len: int, dropout_rate: float = 0.0, platform: str | None = None,
                terms: Sequence[Term] = ()) -> str:
  """The core "auto" uses for these lengths and terms on `platform` (default: the target platform, see
  `zoo.sharding.target_platform`: the devices of the mesh being traced for, not the host's): the Pallas kernel on a
  TPU / GPU; on CPU "xla" up to `AUTO_DENSE_MAX_ELEMENTS` logits per head and example, "chunked" beyond (short
  sequences run fastest dense; long ones would not fit) — the first of these preferences that serves the request
  ("xla" whenever attention dropout is on)."""
  platform = platform or sharding.target_platform()
  preferred = ("pallas",) if platform in ("tpu", "gpu") else ()
  preferred += ("xla", "chunked") if q_len * k_len <= AUTO_DENSE_MAX_ELEMENTS else ("chunked", "xla")
  return next(name for name in preferred if CORES[name].refusal(terms, None, dropout_rate) is None)


def cores_serving(bias: Sequence[Term] = (), scale: Term | None = None, dropout_rate: float = 0.0,
                  transform: bool = False, weights: str = "softmax") -> list[str]:
  """The names of the concrete cores that serve this request."""
  return [name for name, cls in sorted(CORES.items())
          if cls.refusal(bias, scale, dropout_rate, transform, weights) is None]


def available() -> tuple[str, ...]:
  return tuple(sorted(REGISTRY))


def core_class(impl: str) -> type[Core]:
  """The class registered as `impl`; a ValueError lists the valid names otherwise."""
  if impl not in REGISTRY:
    raise ValueError(f"unknown attention impl {impl!r}; valid choices: {', '.join(available())}")
  return REGISTRY[impl]


def build(impl: str, options: Mapping[str, Any] | None = None) -> Core:
  """The core `impl` with `options` (a mapping of its `Options` fields; unknown or mistyped ones fail)."""
  return core_class(impl)(options)


def attend(q, k, v, *, impl: str = "xla", mask: AttentionMask, bias: Sequence[Term] = (), scale: Term | None = None,
           softmax_scale: float | None = None, dropout_rate: float = 0.0, dropout_rng: jax.Array | None = None,
           noise: jax.Array | None = None, weights: str = "softmax", **options) -> jax.Array:
  """One uncached call of core `impl` built with `options` (its `Options` fields); refuses what it does not serve."""
  return build(impl, options)(q, k, v, Terms(tuple(bias), scale), mask, softmax_scale=softmax_scale,
                              dropout_rate=dropout_rate, dropout_rng=dropout_rng, noise=noise, weights=weights)[0]
