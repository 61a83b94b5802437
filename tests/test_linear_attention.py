"""Linear attention against an explicit O(L²) evaluation of the same kernel, and FAVOR+ against softmax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.attention import linear

B, L, H, D = 2, 11, 2, 8


def explicit_kernel_attention(qf, kf, v, causal, k_valid):
  """out_i = Σ_j w_ij v_j / Σ_j w_ij with w_ij = φ(q_i)·φ(k_j) over visible keys, in numpy, pair by pair."""
  out = np.zeros(v.shape[:3] + (v.shape[-1],))
  for b in range(qf.shape[0]):
    for h in range(qf.shape[2]):
      for i in range(qf.shape[1]):
        cols = [j for j in range(kf.shape[1]) if (not causal or j <= i) and k_valid[b, j]]
        if not cols:
          continue
        weights = np.array([qf[b, i, h] @ kf[b, j, h] for j in cols])
        out[b, i, h] = weights @ v[b, cols, h] / weights.sum()
  return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size", [4, 128])
def test_relu_linear_attention_equals_explicit_evaluation(causal, chunk_size):
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(B, L, H, D)).astype(np.float32) for _ in range(3))
  k_valid = np.ones((B, L), bool)
  k_valid[1, 7:] = False
  qf, kf = np.maximum(q, 0) + 1e-3, np.maximum(k, 0) + 1e-3  # the ReLU map, written out
  q_features, k_log = linear.kernel_features("relu", jnp.asarray(q), jnp.asarray(k), softmax_scale=1.0)
  ours = linear.linear_attention(q_features, k_log, jnp.asarray(v), causal=causal,
                                 k_valid=jnp.asarray(k_valid), chunk_size=chunk_size)
  np.testing.assert_allclose(np.asarray(ours), explicit_kernel_attention(qf, kf, v, causal, k_valid),
                             rtol=1e-5, atol=1e-5)


def test_queries_without_visible_keys_output_zeros_and_finite_gradients():
  rng = np.random.default_rng(1)
  q, k, v = (jnp.asarray(rng.normal(size=(1, 6, 1, 4)), jnp.float32) for _ in range(3))
  k_valid = jnp.zeros((1, 6), bool)
  def f(q):
    q_features, k_log = linear.kernel_features("relu", q, k, softmax_scale=1.0)
    return linear.linear_attention(q_features, k_log, v, causal=True, k_valid=k_valid, chunk_size=4).sum()
  assert float(f(q)) == 0.0
  assert np.all(np.isfinite(np.asarray(jax.grad(f)(q))))


def softmax_attention(q, k, v):
  logits = np.einsum("blhd,bmhd->bhlm", q, k) / np.sqrt(q.shape[-1])
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  return np.einsum("bhlm,bmhd->blhd", weights / weights.sum(-1, keepdims=True), v)


def test_favor_approximates_softmax_and_improves_with_more_features():
  """Mean absolute error against exact softmax attention, averaged over 4 feature draws: it must fall as the
  feature count grows, and be below 0.05 at 1024 features (values are N(0, 1); queries/keys scaled by 0.5)."""
  rng = np.random.default_rng(2)
  q, k = (0.5 * rng.normal(size=(1, 64, 2, 16)).astype(np.float32) for _ in range(2))
  v = rng.normal(size=(1, 64, 2, 16)).astype(np.float32)
  exact = softmax_attention(q, k, v)
  errors = {}
  for features in (16, 128, 1024):
    draws = []
    for seed in range(4):
      w = linear.orthogonal_random_features(jax.random.key(seed), features, 16)
      q_features, k_log = linear.kernel_features("favor", jnp.asarray(q), jnp.asarray(k), softmax_scale=16 ** -0.5,
                                                 projection=w)
      out = linear.linear_attention(q_features, k_log, jnp.asarray(v))
      draws.append(np.abs(np.asarray(out) - exact).mean())
    errors[features] = float(np.mean(draws))
  assert errors[16] > errors[128] > errors[1024], errors
  assert errors[1024] < 0.05, errors


def test_orthogonal_random_features_are_orthogonal_within_a_block():
  w = np.asarray(linear.orthogonal_random_features(jax.random.key(0), 24, 8))
  assert w.shape == (24, 8)
  block = w[:8] / np.linalg.norm(w[:8], axis=1, keepdims=True)
  np.testing.assert_allclose(block @ block.T, np.eye(8), atol=1e-5)
