"""The XLA reference attention against an explicit numpy evaluation, row by row, of
out_i = Σ_j (softmax_j(q_i·k_j/√d + B_ij, over visible j) · C_ij) v_j."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import attention
from zoo.attention import AttentionMask, RelativeTable
from zoo.positional import LagIndex
from zoo.positional.alibi import alibi_bias

B, H, L, D = 2, 3, 7, 4


def numpy_attention(q, k, v, visible, bias, scale):
  """q, k, v: [B, L, H, D]; visible, bias, scale: [B, H, L, L] (bias 0 / scale 1 where absent)."""
  out = np.zeros_like(q)
  for b in range(q.shape[0]):
    for h in range(q.shape[2]):
      for i in range(q.shape[1]):
        cols = np.flatnonzero(visible[b, h, i])
        if cols.size == 0:
          continue  # a query with no visible key outputs zeros
        logits = q[b, i, h] @ k[b, cols, h].T / np.sqrt(q.shape[-1]) + bias[b, h, i, cols]
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        out[b, i, h] = (weights * scale[b, h, i, cols]) @ v[b, cols, h]
  return out


def random_qkv(seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(B, L, H, D)).astype(dtype) for _ in range(3)]


def explicit_visibility(q_pos, k_pos, causal, q_seg, k_seg, k_valid):
  visible = np.ones((B, H, L, L), bool)
  for b in range(B):
    for i in range(L):
      for j in range(L):
        ok = (not causal or k_pos[b, j] <= q_pos[b, i])
        ok &= q_seg is None or q_seg[b, i] == k_seg[b, j]
        ok &= k_valid is None or bool(k_valid[b, j])
        visible[b, :, i, j] = ok
  return visible


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_segments", [False, True])
def test_reference_matches_numpy_with_bias_scale_and_masks(causal, with_segments):
  q, k, v = random_qkv()
  rng = np.random.default_rng(1)
  positions = np.tile(np.arange(L), (B, 1)) + np.array([[0], [5]])  # the second sequence starts at position 5
  segments = np.array([[1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, 1, 2, 2]]) if with_segments else None
  k_valid = np.ones((B, L), bool)
  k_valid[1, -2:] = False  # padding
  index = LagIndex("clip", max_distance=3)
  b_table = rng.normal(size=(H, index.rows)).astype(np.float32)
  c_table = rng.normal(size=(H, index.rows)).astype(np.float32)  # C may be negative
  slopes = np.array([0.5, 0.25, 0.125], np.float32)
  jpos = jnp.asarray(positions)
  bias_terms = (RelativeTable(jnp.asarray(b_table), index), alibi_bias(slopes))
  scale_term = RelativeTable(jnp.asarray(c_table), index)
  mask = AttentionMask(q_pos=jpos, k_pos=jpos, q_segment_ids=None if segments is None else jnp.asarray(segments),
                       k_segment_ids=None if segments is None else jnp.asarray(segments),
                       k_valid=jnp.asarray(k_valid), causal=causal)
  ours = attention.attend(*map(jnp.asarray, (q, k, v)), impl="xla", mask=mask, bias=bias_terms, scale=scale_term)

  lag = positions[:, None, :] - positions[:, :, None]  # [B, L, L]
  rows = np.clip(lag, -3, 3) + 3
  bias = b_table[:, rows].transpose(1, 0, 2, 3) - slopes[None, :, None, None] * np.abs(lag)[:, None]
  scale = c_table[:, rows].transpose(1, 0, 2, 3)
  visible = explicit_visibility(positions, positions, causal, segments, segments, k_valid)
  np.testing.assert_allclose(np.asarray(ours), numpy_attention(q, k, v, visible, bias, scale), rtol=1e-5, atol=1e-5)


def test_fully_masked_query_outputs_zeros_and_padded_keys_get_no_weight():
  q, k, v = map(jnp.asarray, random_qkv())
  positions = jnp.tile(jnp.arange(L), (B, 1))
  k_valid = jnp.ones((B, L), bool).at[0].set(False).at[1, 3:].set(False)
  scale = RelativeTable(jnp.full((H, 3), 7.0), LagIndex("clip", 1))
  mask = AttentionMask(q_pos=positions, k_pos=positions, k_valid=k_valid)
  out = attention.reference_attention(q, k, v, mask=mask, scale=scale)
  assert np.all(np.asarray(out[0]) == 0)
  # Changing the values of padded keys changes nothing (C = 0 there in effect, whatever the table says).
  v_changed = v.at[1, 3:].set(1e6)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(attention.reference_attention(
      q, k, v_changed, mask=mask, scale=scale)))


def test_softmax_runs_in_float32_for_bfloat16_inputs():
  q, k, v = random_qkv()
  q = q * 30  # large logits: a bfloat16 softmax would lose most of its precision
  positions = jnp.tile(jnp.arange(L), (B, 1))
  mask = AttentionMask(q_pos=positions, k_pos=positions)
  full = attention.reference_attention(*map(jnp.asarray, (q, k, v)), mask=mask)
  half = attention.reference_attention(*(jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)), mask=mask)
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float32), np.asarray(full), atol=0.1)
  assert np.all(np.isfinite(np.asarray(half, np.float32)))


def test_attention_dropout_keeps_expectation():
  q, k, v = map(jnp.asarray, random_qkv())
  positions = jnp.tile(jnp.arange(L), (B, 1))
  mask = AttentionMask(q_pos=positions, k_pos=positions)
  plain = attention.reference_attention(q, k, v, mask=mask)
  drops = jax.vmap(lambda key: attention.reference_attention(q, k, v, mask=mask, dropout_rate=0.3,
                                                             dropout_rng=key))(jax.random.split(jax.random.key(0), 2000))
  assert not np.allclose(np.asarray(drops[0]), np.asarray(plain))
  np.testing.assert_allclose(np.asarray(drops.mean(0)), np.asarray(plain), atol=0.06)


def test_unknown_impl_names_the_valid_ones():
  with pytest.raises(ValueError, match=r"unknown attention impl 'flash'; valid choices: auto, chunked, linear, "
                                       r"pallas, xla"):
    attention.build("flash")


def weight_rule_inputs(seed: int = 0):
  """Random q, k [B, L, H, D]; values v [B, L, H, L] one-hot per key (v_j = e_j), so the output row of query i is
  its weight row; a causal mask with the last two keys of batch row 1 padded."""
  q, k, _ = random_qkv(seed)
  v = np.broadcast_to(np.eye(L, dtype=np.float32)[None, :, None, :], (B, L, H, L))
  valid = np.ones((B, L), bool)
  valid[1, -2:] = False
  pos = jnp.broadcast_to(jnp.arange(L), (B, L))
  mask = AttentionMask(q_pos=pos, k_pos=pos, k_valid=jnp.asarray(valid), causal=True)
  visible = np.broadcast_to((np.tril(np.ones((L, L), bool))[None] & valid[:, None, :])[:, None], (B, H, L, L))
  return q, k, v, mask, visible


def test_hardmax_forward_is_one_hot_on_the_first_maximum_and_backward_is_softmaxs_gradient():
  """Forward: each row is exactly one-hot on the first largest visible logit (ties: the lowest key). Backward: the
  gradient of softmax at the same logits, written in numpy: ∂L/∂z = p ⊙ (g − Σ g p), ∂L/∂q_i = Σ_j ∂L/∂z_ij k_j/√D."""
  q, k, v, mask, visible = weight_rule_inputs()
  q[0, 3, 1] = 0.0  # a row of ties: every logit 0, so the first visible key (0) wins
  weights = np.asarray(attention.attend(*map(jnp.asarray, (q, k, v)), impl="xla", mask=mask, weights="hardmax"))
  weights = weights.transpose(0, 2, 1, 3)  # [B, H, L(queries), L(keys)]
  logits = np.einsum("bqhd,bkhd->bhqk", q.astype(np.float64), k) / np.sqrt(D)
  masked = np.where(visible, logits, -np.inf)
  want = np.eye(L)[np.argmax(masked, axis=-1)]
  np.testing.assert_array_equal(weights, want)  # exact: 0s and one 1 per row
  assert weights[0, 1, 3, 0] == 1.0 and weights.sum(-1).min() == weights.max() == 1.0
  g = np.random.default_rng(1).normal(size=(B, L, H, L)).astype(np.float32)  # ∂L/∂out
  grad = jax.grad(lambda q: jnp.sum(attention.attend(q, jnp.asarray(k), jnp.asarray(v), impl="xla", mask=mask,
                                                     weights="hardmax") * g))(jnp.asarray(q))
  p = np.exp(masked - masked.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  g_weights = g.transpose(0, 2, 1, 3).astype(np.float64)  # ∂L/∂weights: v is the identity
  g_logits = p * (g_weights - np.sum(g_weights * p, axis=-1, keepdims=True))
  want_grad = np.einsum("bhqk,bkhd->bqhd", g_logits, k) / np.sqrt(D)
  np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-5, atol=1e-6)


def test_uniform_weights_average_the_visible_values_and_none_gives_zero():
  q, k, _, mask, visible = weight_rule_inputs(2)
  v = np.random.default_rng(3).normal(size=(B, L, H, D)).astype(np.float32)
  uniform = lambda q: attention.attend(q, jnp.asarray(k), jnp.asarray(v), impl="xla", mask=mask, weights="uniform")
  want = np.zeros((B, L, H, D))
  for b in range(B):
    for i in range(L):
      want[b, i] = v[b, np.flatnonzero(visible[b, 0, i])].mean(axis=0)
  np.testing.assert_allclose(np.asarray(uniform(jnp.asarray(q))), want, rtol=1e-6, atol=1e-6)
  assert not np.asarray(jax.grad(lambda q: jnp.sum(uniform(q) ** 2))(jnp.asarray(q))).any()  # q unread
  none = attention.attend(*map(jnp.asarray, (q, k, v)), impl="xla", mask=mask, weights="none")
  assert not np.asarray(none).any()


@pytest.mark.parametrize("impl", ["chunked", "pallas", "linear"])
def test_cores_without_a_weight_rule_refuse_it_naming_the_one_that_has_it(impl):
  q, k, v, mask, _ = weight_rule_inputs()
  with pytest.raises(ValueError, match=rf"attention impl '{impl}' computes softmax attention weights only \(got "
                                       r"weights='hardmax'\); use impl='xla'"):
    attention.attend(*map(jnp.asarray, (q, k, v)), impl=impl, mask=mask.replace(causal=False, k_valid=None),
                     weights="hardmax", **({"feature_map": "relu"} if impl == "linear" else {}))
