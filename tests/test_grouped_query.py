"""Grouped-query attention in every core: keys and values with fewer heads than the queries (kv_heads dividing heads,
down to one) give what the same attention over `jnp.repeat`-ed keys and values gives — an independent reference
written here — forward and in the gradients of q, k and v (a kv head's gradient sums its query heads'). The Pallas
kernels (both drivers, in the interpreter) map query head h to kv head h // (heads / kv_heads) in their index maps."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from zoo import attention, positional
from zoo.attention import AttentionMask, Tile, dense_sum
from zoo.positional import Coordinates, ModelDims

B, L, H, D = 2, 21, 4, 8  # L is not a multiple of the blocks below
BLOCK = 8
CORES = {
    "xla": functools.partial(attention.attend, impl="xla"),
    "chunked": functools.partial(attention.attend, impl="chunked", chunk_q=BLOCK, chunk_k=BLOCK),
    "pallas": functools.partial(attention.attend, impl="pallas", block_q=BLOCK, block_k=BLOCK),
    "pallas-gpu-driver": functools.partial(attention.flash_attention, block_q=BLOCK, block_k=BLOCK, backend="gpu"),
}


def inputs(kv_heads):
  """q [B, L, H, D], k / v [B, L, kv_heads, D]; causal, example 1 offset by 3 with 5 padding keys; ALiBi's per-head
  slopes as the bias (so a query head that read another head's bias would show)."""
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(B, L, H, D)), jnp.float32)
  k, v = (jnp.asarray(rng.normal(size=(B, L, kv_heads, D)), jnp.float32) for _ in range(2))
  positions = jnp.asarray(np.stack([np.arange(L), np.arange(L) + 3]))
  mask = AttentionMask(q_pos=positions, k_pos=positions, k_valid=jnp.ones((B, L), bool).at[1, -5:].set(False),
                       causal=True)
  with nnx.use_eager_sharding(False):
    alibi = positional.build("alibi", None, ModelDims(H, D, H * D, 64, True), rngs=nnx.Rngs(0))
  bias, _ = positional.attention_terms(alibi, Coordinates(positions), Coordinates(positions))
  return (q, k, v), mask, bias


def repeated_heads_softmax(q, k, v, *, mask, bias):
  """The plain evaluation: k and v repeated to H heads (head h gets kv head h // (H / kv_heads)), dense softmax."""
  k, v = (jnp.repeat(x, H // x.shape[2], axis=2) for x in (k, v))
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * D ** -0.5 + dense_sum(bias, Tile.whole(mask.q_pos, mask.k_pos))
  allowed = (mask.k_pos[:, None, :] <= mask.q_pos[:, :, None]) & mask.k_valid[:, None, :]  # [B, L, L]
  probs = jax.nn.softmax(jnp.where(allowed[:, None], logits, -1e30), axis=-1)
  out = jnp.einsum("bhqk,bkhd->bqhd", jnp.where(allowed[:, None], probs, 0.0), v)
  return jnp.where(allowed.any(-1)[:, :, None, None], out, 0.0)


def outputs_and_gradients(core, kv_heads):
  """core's output and the gradients of Σ out · weights with respect to q, k and v."""
  (q, k, v), mask, bias = inputs(kv_heads)
  weights = jnp.asarray(np.random.default_rng(1).normal(size=(B, L, H, D)), jnp.float32)

  @jax.jit
  def run(q, k, v):
    out, vjp = jax.vjp(lambda q, k, v: core(q, k, v, mask=mask, bias=bias), q, k, v)
    return out, vjp(weights)

  return run(q, k, v)


@pytest.mark.parametrize("kv_heads", [1, 2])
@pytest.mark.parametrize("core", CORES)
def test_softmax_cores_read_each_query_heads_kv_head(core, kv_heads):
  out, (dq, dk, dv) = outputs_and_gradients(CORES[core], kv_heads)
  want, (want_dq, want_dk, want_dv) = outputs_and_gradients(repeated_heads_softmax, kv_heads)
  assert dk.shape == dv.shape == (B, L, kv_heads, D)
  np.testing.assert_allclose(np.asarray(out), np.asarray(want), atol=1e-5, rtol=1e-5)
  for got, expected in [(dq, want_dq), (dk, want_dk), (dv, want_dv)]:
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-4, rtol=1e-4)


def repeated_heads_relu_kernel(q, k, v, *, mask, bias):
  """Linear attention with relu features, pair by pair over repeated heads: Σ_j w_ij v_j / Σ_j w_ij."""
  del bias
  k, v = (jnp.repeat(x, H // x.shape[2], axis=2) for x in (k, v))
  phi = lambda x: jax.nn.relu(x) + 1e-3
  w = jnp.einsum("bqhd,bkhd->bhqk", phi(q), phi(k))
  allowed = (jnp.arange(L)[None, :] <= jnp.arange(L)[:, None])[None] & mask.k_valid[:, None, :]  # array order
  w = jnp.where(allowed[:, None], w, 0.0)
  return jnp.einsum("bhqk,bkhd->bqhd", w, v) / w.sum(-1).transpose(0, 2, 1)[..., None]


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_linear_core_reads_each_query_heads_kv_head(kv_heads):
  core = functools.partial(attention.attend, impl="linear", feature_map="relu")
  linear_core = lambda q, k, v, *, mask, bias: core(q, k, v, mask=mask)
  out, (dq, dk, dv) = outputs_and_gradients(linear_core, kv_heads)
  want, (want_dq, want_dk, want_dv) = outputs_and_gradients(repeated_heads_relu_kernel, kv_heads)
  np.testing.assert_allclose(np.asarray(out), np.asarray(want), atol=1e-5, rtol=1e-5)
  for got, expected in [(dq, want_dq), (dk, want_dk), (dv, want_dv)]:
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-4, rtol=1e-4)


def test_kv_heads_must_divide_the_query_heads():
  (q, k, v), mask, _ = inputs(3)
  for impl in attention.CORES:
    with pytest.raises(ValueError, match=r"kv heads dividing the query heads, got 3 and 4"):
      attention.attend(q, k, v, impl=impl, mask=mask, **({"feature_map": "relu"} if impl == "linear" else {}))
