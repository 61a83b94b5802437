"""Kernelized (linear-complexity) attention: out_i = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j).

The L × L matrix is never formed: non-causal attention contracts keys and values first (O(L · features · d)),
causal attention carries prefix sums over chunks, so memory stays O(L · features + chunk²). Feature maps:

* `relu_features` — φ(x) = relu(x) + 1e-3 (the "linear transformer" of the SPE paper).
* `favor_features` — Performer FAVOR+ positive orthogonal random features (Choromanski et al., 2021), an unbiased
  estimate of the softmax kernel exp(q·k/√d).

Causality here follows array order (position order within a sequence); padded keys contribute nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RELU_EPSILON = 1e-3


def relu_features(x: jax.Array) -> jax.Array:
  """[..., d] -> [..., d]: relu(x) + 1e-3, strictly positive so every normaliser is > 0."""
  return jax.nn.relu(x.astype(jnp.float32)) + RELU_EPSILON


def orthogonal_random_features(rng: jax.Array, num_features: int, dim: int) -> jax.Array:
  """[num_features, dim]: stacked blocks of orthogonal rows, each row rescaled to the norm of a Gaussian vector
  (so rows are marginally N(0, I) but mutually orthogonal within a block, which lowers the estimator's variance)."""
  block_rng, norm_rng = jax.random.split(rng)
  num_blocks = -(-num_features // dim)
  gaussian = jax.random.normal(block_rng, (num_blocks, dim, dim))
  orthogonal = jnp.linalg.qr(gaussian)[0].transpose(0, 2, 1).reshape(num_blocks * dim, dim)[:num_features]
  norms = jnp.linalg.norm(jax.random.normal(norm_rng, (num_features, dim)), axis=-1, keepdims=True)
  return orthogonal * norms


def favor_features(x: jax.Array, projection: jax.Array, *, is_query: bool) -> jax.Array:
  """FAVOR+ positive features of queries or keys.

  x: [batch, length, heads, dim]; projection: [features, dim] -> [batch, length, heads, features], with
  E[φ(q)·φ(k)] ∝ exp(q·k / √dim). Stabilised by subtracting a max before the exp: per query row for queries (it
  cancels in the normalisation), one constant per (batch, head) for keys (it cancels too).
  """
  x = x.astype(jnp.float32) * x.shape[-1] ** -0.25
  logits = jnp.einsum("blhd,md->blhm", x, projection)
  logits = logits - 0.5 * jnp.sum(x * x, axis=-1, keepdims=True)
  axes = (-1,) if is_query else (1, -1)
  stabiliser = jax.lax.stop_gradient(jnp.max(logits, axis=axes, keepdims=True))
  return (jnp.exp(logits - stabiliser) + 1e-6) * projection.shape[0] ** -0.5


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """numerator [..., d] / denominator [...], and 0 where a query sees no key (denominator 0): no NaN, even in the
  gradients of padded rows."""
  empty = denominator == 0
  return jnp.where(empty[..., None], 0.0, numerator / jnp.where(empty, 1.0, denominator)[..., None])


def linear_attention(
    q_features: jax.Array,  # [batch, q_len, heads, features]
    k_features: jax.Array,  # [batch, k_len, heads, features]
    v: jax.Array,  # [batch, k_len, heads, v_dim]
    *,
    causal: bool = False,
    k_valid: jax.Array | None = None,  # [batch, k_len] bool; False keys contribute nothing
    chunk_size: int = 128,
) -> jax.Array:  # [batch, q_len, heads, v_dim], float32
  """Attention with the kernel φ(q)·φ(k) given the feature maps' outputs. Causal needs q_len == k_len."""
  k_features = k_features.astype(jnp.float32)
  v = v.astype(jnp.float32)
  if k_valid is not None:
    k_features = k_features * k_valid[:, :, None, None]
  if not causal:
    kv = jnp.einsum("blhm,blhd->bhmd", k_features, v)  # [batch, heads, features, v_dim]
    normaliser = jnp.einsum("blhm,bhm->blh", q_features, k_features.sum(axis=1))
    return safe_divide(jnp.einsum("blhm,bhmd->blhd", q_features, kv), normaliser)
  return _causal_linear_attention(q_features.astype(jnp.float32), k_features, v, chunk_size)


def _causal_linear_attention(qf, kf, v, chunk_size):
  batch, length, heads, features = qf.shape
  if kf.shape[1] != length:
    raise ValueError(f"causal linear attention needs q_len == k_len, got {length} and {kf.shape[1]}")
  chunk = min(chunk_size, length)
  padded = -(-length // chunk) * chunk
  pad = lambda a: jnp.pad(a, ((0, 0), (0, padded - length), (0, 0), (0, 0)))
  # [chunks, batch, chunk, heads, ...]: scan over chunks, carrying the prefix sums of the earlier chunks.
  split = lambda a: pad(a).reshape(batch, padded // chunk, chunk, heads, a.shape[-1]).swapaxes(0, 1)
  within = jnp.tril(jnp.ones((chunk, chunk), bool))  # key j <= query i inside a chunk

  def step(carry, xs):
    kv_sum, k_sum = carry  # [batch, heads, features, v_dim], [batch, heads, features]
    q_c, k_c, v_c = xs
    scores = jnp.where(within[None, None], jnp.einsum("bihm,bjhm->bhij", q_c, k_c), 0.0)
    numerator = jnp.einsum("bhij,bjhd->bihd", scores, v_c) + jnp.einsum("bihm,bhmd->bihd", q_c, kv_sum)
    denominator = scores.sum(axis=-1).transpose(0, 2, 1) + jnp.einsum("bihm,bhm->bih", q_c, k_sum)
    carry = (kv_sum + jnp.einsum("bjhm,bjhd->bhmd", k_c, v_c), k_sum + k_c.sum(axis=1))
    return carry, safe_divide(numerator, denominator)

  init = (jnp.zeros((batch, heads, features, v.shape[-1])), jnp.zeros((batch, heads, features)))
  _, out = jax.lax.scan(step, init, (split(qf), split(kf), split(v)))
  return out.swapaxes(0, 1).reshape(batch, padded, heads, v.shape[-1])[:, :length]
