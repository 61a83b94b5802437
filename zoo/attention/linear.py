"""Kernelized (linear-complexity) attention: out_i = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j).

The L × L matrix is never formed: non-causal attention contracts keys and values first (O(L · features · d)),
causal attention carries prefix sums over chunks, so memory stays O(L · features + chunk²). Feature maps
(`FEATURE_MAPS`):

* "relu" — φ(x) = relu(x) + 1e-3 (the "linear transformer" of the SPE paper).
* "favor" — Performer FAVOR+ positive orthogonal random features (Choromanski et al., 2021), an unbiased estimate
  of the softmax kernel exp(q·k · softmax_scale). The projection is an argument: the caller redraws it every
  training step (`NoiseKeys`) and fixes it in evaluation.

Keys enter in the **log domain** (log φ(k)). The core exponentiates them against a running maximum per (batch,
head) — the online-softmax trick — which stabilises FAVOR+'s exponentials without a constant that depends on later
keys, so causal prefix sums and the decoding state (`LinearState`, O(features · d) work per new token) stay
consistent when a larger key arrives. Queries are stabilised per row (the factor cancels in the normalisation).

Keys and values may have fewer heads than the queries (grouped-query attention): query head h reads kv head
h // (heads / kv_heads), and the state keeps kv heads only — a key's features do not depend on the query head.

A sliding window (`windowed_linear_attention`) sums the kernel over the window's keys themselves, chunk by chunk,
with no state: a state cannot forget the keys that leave the window.

Causality follows array order (positions ascending within a sequence, as in every zoo family); padded keys
contribute nothing (the reference Performer let them in); a query that sees no key outputs 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from zoo.attention.grouped import group_size
from zoo.attention.masks import AttentionMask

FEATURE_MAPS = ("favor", "relu")
RELU_EPSILON = 1e-3
FAVOR_EPSILON = 1e-6  # added to the (row-stabilised) query features, as in the Performer code
_NO_KEY = -1e30  # the running maximum before any key: finite, so exp(old - new) is never NaN


class NoiseKeys(nnx.Module):
  """Keys for randomness that is redrawn every training step and fixed in evaluation (FAVOR+ features, SPE noise).

  While training, every call draws a fresh key from an RNG stream of its own, named `name`: the caller's
  `rngs.<name>` when it has one (so a training script seeds it), otherwise one seeded from the params stream. When
  deterministic (`model.eval()`), every call returns `eval_key`, drawn once at construction (assign another key to
  it to choose another draw), so evaluation is reproducible and cached decoding sees the same draw at every step.
  """

  def __init__(self, name: str, rngs: nnx.Rngs):
    self.stream = rngs[name].fork() if name in rngs else nnx.RngStream(rngs.params(), tag=name)
    self.eval_key = nnx.RngKey(self.stream(), tag=name)
    self.deterministic = False  # flipped by `model.eval()` / `model.train()`

  def __call__(self) -> jax.Array:
    return self.eval_key[...] if self.deterministic else self.stream()


def relu_features(x: jax.Array) -> jax.Array:
  """[..., d] -> [..., d]: relu(x) + 1e-3, strictly positive so every normaliser is > 0."""
  return jax.nn.relu(x.astype(jnp.float32)) + RELU_EPSILON


def _orthonormal_rows(x: jax.Array) -> jax.Array:
  """[blocks, n, n] -> rows made orthonormal in order (Gram-Schmidt, each projection applied twice for accuracy).

  Plain XLA ops rather than `jnp.linalg.qr`: the LAPACK QR call inside a jitted decode step with a grouped
  convolution (spe_conv) deadlocked XLA's CPU runtime in our tests.
  """
  n = x.shape[-1]

  def orthogonalize(i, q):  # q: [blocks, n, n], rows < i done
    earlier = q * (jnp.arange(n) < i)[None, :, None]
    v = x[:, i]
    for _ in range(2):
      v = v - jnp.einsum("bj,bjd->bd", jnp.einsum("bd,bjd->bj", v, earlier), earlier)
    return q.at[:, i].set(v / jnp.linalg.norm(v, axis=-1, keepdims=True))

  return jax.lax.fori_loop(0, n, orthogonalize, jnp.zeros_like(x))


def orthogonal_random_features(rng: jax.Array, num_features: int, dim: int) -> jax.Array:
  """[num_features, dim]: stacked blocks of orthogonal rows, each row rescaled to the norm of a Gaussian vector
  (so rows are marginally N(0, I) but mutually orthogonal within a block, which lowers the estimator's variance)."""
  block_rng, norm_rng = jax.random.split(rng)
  num_blocks = -(-num_features // dim)
  gaussian = jax.random.normal(block_rng, (num_blocks, dim, dim))
  orthogonal = _orthonormal_rows(gaussian).reshape(num_blocks * dim, dim)[:num_features]
  norms = jnp.linalg.norm(jax.random.normal(norm_rng, (num_features, dim)), axis=-1, keepdims=True)
  return orthogonal * norms


def favor_log_features(x: jax.Array, projection: jax.Array, softmax_scale: float) -> jax.Array:
  """log of FAVOR+'s positive features, up to a constant: w·x' − |x'|²/2 with x' = x · √softmax_scale.

  x: [..., dim]; projection: [features, dim] -> [..., features]. E_w[exp(a(q)) · exp(a(k))] = exp(q·k ·
  softmax_scale) for w ~ N(0, I): the softmax kernel. Constant factors (Performer's 1/√features) cancel in the
  normalisation and are left out.
  """
  x = x.astype(jnp.float32) * softmax_scale ** 0.5
  return jnp.einsum("...d,md->...m", x, projection) - 0.5 * jnp.sum(x * x, axis=-1, keepdims=True)


def kernel_features(name: str, q: jax.Array, k: jax.Array, *, softmax_scale: float,
                projection: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Query features and key log-features of feature map `name` (one of FEATURE_MAPS).

  q: [batch, q_len, heads, dim], k: [batch, k_len, heads, dim] -> [batch, q_len, heads, features],
  [batch, k_len, heads, features] (float32). "favor" needs `projection` [features, dim]; "relu" has features = dim.
  """
  if name == "relu":
    return relu_features(q), jnp.log(relu_features(k))
  if name == "favor":
    if projection is None:
      raise ValueError("the 'favor' feature map needs a projection (orthogonal_random_features)")
    q_log = favor_log_features(q, projection, softmax_scale)
    q_features = jnp.exp(q_log - jax.lax.stop_gradient(jnp.max(q_log, axis=-1, keepdims=True))) + FAVOR_EPSILON
    return q_features, favor_log_features(k, projection, softmax_scale)
  raise ValueError(f"unknown feature map {name!r}; valid choices: {', '.join(FEATURE_MAPS)}")


@struct.dataclass
class LinearState:
  """What causal linear attention keeps of the keys seen so far: the decoding cache of a linear-attention layer.

  With shift the largest key log-feature seen, kv = Σ_j exp(log φ(k_j) − shift) v_jᵀ and k_sum = Σ_j exp(log φ(k_j)
  − shift); outputs are ratios, so the common factor exp(−shift) cancels.
  """

  kv: jax.Array  # [batch, kv_heads, features, v_dim] float32
  k_sum: jax.Array  # [batch, kv_heads, features] float32
  shift: jax.Array  # [batch, kv_heads] float32

  @classmethod
  def empty(cls, batch: int, kv_heads: int, features: int, v_dim: int) -> LinearState:
    return cls(kv=jnp.zeros((batch, kv_heads, features, v_dim)), k_sum=jnp.zeros((batch, kv_heads, features)),
               shift=jnp.full((batch, kv_heads), _NO_KEY))


def _grouped(q_features: jax.Array, kv_heads: int) -> jax.Array:
  """[batch, length, heads, features] -> [batch, length, kv_heads, group, features]: query head h is group member
  h % group of kv head h // group."""
  batch, length, heads, features = q_features.shape
  return q_features.reshape(batch, length, kv_heads, group_size(heads, kv_heads), features)


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """numerator [..., d] / denominator [...], and 0 where a query sees no key (denominator 0): no NaN, even in the
  gradients of padded rows."""
  empty = denominator == 0
  return jnp.where(empty[..., None], 0.0, numerator / jnp.where(empty, 1.0, denominator)[..., None])


def _masked(k_log: jax.Array, k_valid: jax.Array | None) -> jax.Array:
  """Key log-features with invalid keys at -inf (feature exp(-inf) = 0: they contribute nothing)."""
  k_log = k_log.astype(jnp.float32)
  return k_log if k_valid is None else jnp.where(k_valid[:, :, None, None], k_log, -jnp.inf)


def _max_key(k_log: jax.Array) -> jax.Array:
  """The largest key log-feature per (batch, head), [batch, heads], never below _NO_KEY; no gradient (it cancels)."""
  return jax.lax.stop_gradient(jnp.maximum(jnp.max(k_log, axis=(1, 3)), _NO_KEY))


def linear_attention(
    q_features: jax.Array,  # [batch, q_len, heads, features]
    k_log_features: jax.Array,  # [batch, k_len, kv_heads, features]
    v: jax.Array,  # [batch, k_len, kv_heads, v_dim]
    *,
    causal: bool = False,
    k_valid: jax.Array | None = None,  # [batch, k_len] bool; False keys contribute nothing
    chunk_size: int = 128,
) -> jax.Array:  # [batch, q_len, heads, v_dim], float32
  """Attention with the kernel φ(q)·exp(log φ(k)). Causal needs q_len == k_len."""
  if causal:
    batch, _, kv_heads, features = k_log_features.shape
    empty = LinearState.empty(batch, kv_heads, features, v.shape[-1])
    return causal_linear_attention(q_features, k_log_features, v, empty, k_valid=k_valid, chunk_size=chunk_size)[0]
  k_log = _masked(k_log_features, k_valid)
  k_features = jnp.exp(k_log - _max_key(k_log)[:, None, :, None])  # [batch, k_len, kv_heads, features]
  kv = jnp.einsum("blhm,blhd->bhmd", k_features, v.astype(jnp.float32))  # [batch, kv_heads, features, v_dim]
  q_grouped = _grouped(q_features, k_log.shape[2])  # [batch, q_len, kv_heads, group, features]
  normaliser = jnp.einsum("blhgm,bhm->blhg", q_grouped, k_features.sum(axis=1))
  out = safe_divide(jnp.einsum("blhgm,bhmd->blhgd", q_grouped, kv), normaliser)
  return out.reshape(*q_features.shape[:3], v.shape[-1])


def causal_linear_attention(
    q_features: jax.Array,  # [batch, length, heads, features]
    k_log_features: jax.Array,  # [batch, length, kv_heads, features]
    v: jax.Array,  # [batch, length, kv_heads, v_dim]
    state: LinearState,  # the keys before these tokens (LinearState.empty() for a whole sequence)
    *,
    k_valid: jax.Array | None = None,  # [batch, length] bool
    chunk_size: int = 128,
) -> tuple[jax.Array, LinearState]:  # [batch, length, heads, v_dim] float32, the state after these tokens
  """Causal linear attention over new tokens that continue `state`: token i sees the state and new tokens <= i.

  Scans over chunks of `chunk_size` tokens, carrying the state: inside a chunk the kernel is evaluated as a masked
  chunk × chunk product, across chunks through the state, so memory is O(length · features + chunk²). A whole
  sequence starts from the empty state; a decoder's prefill and each decode step continue the cached one.
  """
  batch, length, heads, _ = q_features.shape
  kv_heads = k_log_features.shape[2]
  if k_log_features.shape[1] != length:
    raise ValueError(f"causal linear attention needs q_len == k_len, got {length} and {k_log_features.shape[1]}")
  chunk = min(chunk_size, length)
  padded = -(-length // chunk) * chunk

  def split(a, fill):  # [batch, length, h, n] -> [chunks, batch, chunk, h, n]
    a = jnp.pad(a, ((0, 0), (0, padded - length), (0, 0), (0, 0)), constant_values=fill)
    return a.reshape(batch, padded // chunk, chunk, *a.shape[2:]).swapaxes(0, 1)

  within = jnp.tril(jnp.ones((chunk, chunk), bool))  # key j <= query i inside a chunk

  def step(carry: LinearState, xs):
    q_c, k_log_c, v_c = xs  # [batch, chunk, heads (q) or kv_heads (k, v), ...]
    q_c = _grouped(q_c, kv_heads)  # [batch, chunk, kv_heads, group, features]
    shift = jnp.maximum(carry.shift, _max_key(k_log_c))  # [batch, kv_heads]
    decay = jnp.exp(carry.shift - shift)  # rescales the earlier sums to the new shift
    kv, k_sum = carry.kv * decay[..., None, None], carry.k_sum * decay[..., None]
    k_c = jnp.exp(k_log_c - shift[:, None, :, None])
    scores = jnp.where(within, jnp.einsum("bihgm,bjhm->bhgij", q_c, k_c), 0.0)
    numerator = jnp.einsum("bhgij,bjhd->bihgd", scores, v_c) + jnp.einsum("bihgm,bhmd->bihgd", q_c, kv)
    denominator = scores.sum(axis=-1).transpose(0, 3, 1, 2) + jnp.einsum("bihgm,bhm->bihg", q_c, k_sum)
    carry = LinearState(kv=kv + jnp.einsum("bjhm,bjhd->bhmd", k_c, v_c), k_sum=k_sum + k_c.sum(axis=1), shift=shift)
    return carry, safe_divide(numerator, denominator).reshape(batch, chunk, heads, -1)

  xs = (split(q_features.astype(jnp.float32), 0.0), split(_masked(k_log_features, k_valid), -jnp.inf),
        split(v.astype(jnp.float32), 0.0))
  state, out = jax.lax.scan(step, state, xs)
  return out.swapaxes(0, 1).reshape(batch, padded, heads, v.shape[-1])[:, :length], state



def windowed_linear_attention(
    q_features: jax.Array,  # [batch, length, heads, features]
    k_log_features: jax.Array,  # [batch, prefix + length, kv_heads, features]: cached keys, then the call's own
    v: jax.Array,  # [batch, prefix + length, kv_heads, v_dim]
    mask: AttentionMask,  # the queries' and those keys' positions and validity; causal, with a window
) -> jax.Array:  # [batch, length, heads, v_dim] float32
  """Sliding-window linear attention: query i sums φ(q_i)·φ(k_j) v_j over the keys its mask shows (not after it,
  fewer than `mask.window` positions behind it, valid) and divides by Σ φ(q_i)·φ(k_j) over the same keys.

  Exactly, from the keys themselves: the window's sum as a difference of prefix sums S_i − S_{i−window} would cancel
  catastrophically once the keys that left the window dominate S_i. The call's keys are cut into chunks of `window`:
  positions increase along a sequence, so a query chunk's window lies in the `prefix` keys (a decoding cache's ring),
  the chunk before it and its own — a masked [window, prefix + 2·window] product per chunk, O(length · (prefix +
  window)) for the call. Each chunk's keys are stabilised by their largest log-feature (the factor cancels)."""
  window = mask.window
  batch, length, heads, _ = q_features.shape
  prefix, kv_heads = k_log_features.shape[1] - length, k_log_features.shape[2]
  chunks = -(-length // window)
  padded = chunks * window
  k_valid = jnp.ones(mask.k_pos.shape, bool) if mask.k_valid is None else mask.k_valid

  def per_chunk(keys, fill):
    """[batch, prefix + length, ...] -> [batch · chunks, prefix + 2 · window, ...]: chunk n's keys are the prefix
    and the call's keys (n − 1) · window .. (n + 1) · window − 1 (a chunk of `fill` before the first)."""
    call = keys[:, prefix:]
    call = jnp.pad(call, [(0, 0), (window, padded - length)] + [(0, 0)] * (call.ndim - 2), constant_values=fill)
    spans = call[:, jnp.arange(chunks)[:, None] * window + jnp.arange(2 * window)]  # [batch, chunks, 2·window, ...]
    cached = jnp.broadcast_to(keys[:, None, :prefix], (batch, chunks, *keys[:, :prefix].shape[1:]))
    both = jnp.concatenate([cached, spans], axis=2)
    return both.reshape(batch * chunks, *both.shape[2:])

  def per_query_chunk(x, mode="constant"):  # [batch, length, ...] -> [batch · chunks, window, ...]
    x = jnp.pad(x, [(0, 0), (0, padded - length)] + [(0, 0)] * (x.ndim - 2), mode=mode)
    return x.reshape(batch * chunks, window, *x.shape[2:])

  allowed = AttentionMask(q_pos=per_query_chunk(mask.q_pos, "edge"), k_pos=per_chunk(mask.k_pos, 0),
                          k_valid=per_chunk(k_valid, False), causal=mask.causal, window=window).dense()
  k_log = per_chunk(_masked(k_log_features, k_valid), -jnp.inf)  # [batch · chunks, keys, kv_heads, features]
  k_c = jnp.exp(k_log - _max_key(k_log)[:, None, :, None])
  q_c = _grouped(per_query_chunk(q_features.astype(jnp.float32)), kv_heads)  # [batch · chunks, window, kv, g, f]
  scores = jnp.where(allowed[:, :, None], jnp.einsum("bihgm,bjhm->bhgij", q_c, k_c), 0.0)
  numerator = jnp.einsum("bhgij,bjhd->bihgd", scores, per_chunk(v.astype(jnp.float32), 0.0))
  out = safe_divide(numerator, scores.sum(axis=-1).transpose(0, 3, 1, 2))  # [batch · chunks, window, kv, g, v_dim]
  return out.reshape(batch, padded, heads, v.shape[-1])[:, :length]
