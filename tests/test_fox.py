"""FoX (Lin et al., ICLR 2025): the forget gate's decay against the paper's definition in numpy, the Pallas kernels
(interpreter) against the XLA reference with packed sequences and padding, forward and gradients down to the gate's
parameters, cached decoding against the full forward, and the refusal of bidirectional models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import extend, forward, random_tokens, tiny, tiny_model
from zoo import attention, models, positional
from zoo.attention import AttentionMask, Tile
from zoo.positional import Coordinates, ModelDims

B, H, D = 2, 2, 8
D_MODEL = H * D


def gate(seed=1):
  """A FoX encoding with its gate moved off the initial one (so gates differ by token and head)."""
  with nnx.use_eager_sharding(False):
    encoding = positional.build("fox", None, ModelDims(H, D, D_MODEL, 64, True), rngs=nnx.Rngs(0))
  keys = iter(jax.random.split(jax.random.key(seed), 10))
  nnx.update(encoding, jax.tree.map(lambda x: x + jax.random.normal(next(keys), x.shape),
                                    nnx.state(encoding, nnx.Param)))
  return encoding


def features(length, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(B, length, D_MODEL)), jnp.float32)


def test_the_bias_is_the_sum_of_log_forget_gates_between_key_and_query():
  """D_ij = Σ_{l=j+1..i} log σ(w_h · x_l + b_h) for every j ≤ i, by an explicit loop in float64 numpy."""
  encoding, x, length = gate(), features(9), 9
  coords = Coordinates(jnp.zeros((B, length), jnp.int32), features=x)
  (term,), scale = positional.attention_terms(encoding, coords, coords)
  got = np.asarray(term.values(Tile.whole(coords.positions, coords.positions)))
  w, b = np.asarray(encoding.gate[...], np.float64), np.asarray(encoding.gate_bias[...], np.float64)
  log_f = -np.log1p(np.exp(-(np.asarray(x, np.float64) @ w + b)))  # [batch, length, heads]
  for n, h, i in np.ndindex(B, H, length):
    for j in range(i + 1):
      want = sum(log_f[n, l, h] for l in range(j + 1, i + 1))
      np.testing.assert_allclose(got[n, h, i, j], want, rtol=1e-5, atol=1e-5, err_msg=(n, h, i, j))
  assert scale is None and np.ptp(log_f) > 1.0  # the gates do differ


def packed_inputs(length=24):
  """q, k, v; example 0 packs two sequences (positions restart at 15), example 1 ends in 5 padding tokens."""
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(B, length, H, D)), jnp.float32) for _ in range(3))
  positions = jnp.asarray(np.stack([np.r_[np.arange(15), np.arange(length - 15)], np.arange(length)]))
  segments = jnp.asarray(np.stack([np.r_[np.zeros(15), np.ones(length - 15)], np.zeros(length)]).astype(np.int32))
  mask = AttentionMask(q_pos=positions, k_pos=positions, q_segment_ids=segments, k_segment_ids=segments,
                       k_valid=jnp.ones((B, length), bool).at[1, -5:].set(False), causal=True)
  return (q, k, v), mask


def loss_and_grads(impl, encoding, x, qkv, mask):
  """Σ out ⊙ w and its gradients with respect to q, k, v, the gate's parameters and the layer input."""
  weights = jnp.asarray(np.random.default_rng(2).normal(size=qkv[0].shape), jnp.float32)

  def loss(q, k, v, encoding, x):
    coords = Coordinates(mask.q_pos, features=x)
    bias, _ = positional.attention_terms(encoding, coords, coords)
    return jnp.sum(impl(q, k, v, mask=mask, bias=bias) * weights)

  return nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))(*qkv, encoding, x)


@pytest.mark.parametrize("impl", ["pallas", pytest.param("pallas-gpu", marks=pytest.mark.slow),
                                  pytest.param("chunked", marks=pytest.mark.slow)])
def test_kernels_equal_the_reference_forward_and_gradients_with_packed_sequences(impl):
  """Blocks of 8 over 24 tokens: the running sums are read per tile, and their gradients (dS's row sums for the
  queries, minus its column sums for the keys) reach the gate's weights and bias and the layer input."""
  qkv, mask = packed_inputs()
  encoding, x = gate(), features(24)
  blocks = dict(block_q=8, block_k=8)
  core = {"pallas": functools.partial(attention.flash_attention, **blocks),
          "pallas-gpu": functools.partial(attention.flash_attention, backend="gpu", **blocks),
          "chunked": functools.partial(attention.chunked_attention, chunk_q=8, chunk_k=8)}[impl]
  (value, grads), (want_value, want_grads) = (loss_and_grads(f, encoding, x, qkv, mask)
                                              for f in (core, attention.reference_attention))
  np.testing.assert_allclose(float(value), float(want_value), rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
  gate_grads = jax.tree.leaves(grads[3])
  assert len(gate_grads) == 2 and all(np.abs(np.asarray(g)).max() > 1e-3 for g in gate_grads)


def moved_gates(model, seed=4):
  """The model with every layer's gate moved off its initial one (gates far from 1/2, differing by token)."""
  keys = iter(jax.random.split(jax.random.key(seed), 100))
  def move(path, x):
    return x + jax.random.normal(next(keys), x.shape) if "['encoding']" in jax.tree_util.keystr(path) else x
  nnx.update(model, jax.tree_util.tree_map_with_path(move, nnx.state(model, nnx.Param)))
  return model


@pytest.mark.slow  # the kernels' test above covers packed sequences by default
def test_packed_sequences_equal_separate_ones():
  """The running sum is not restarted per segment: within one, c_i − c_j sums that segment's gates only."""
  model = moved_gates(tiny_model("decoder", "fox"))
  a, b = random_tokens(2, (1, 5)), random_tokens(3, (1, 7))
  positions = jnp.concatenate([jnp.arange(5), jnp.arange(7)])[None]
  segments = jnp.array([[1] * 5 + [2] * 7])
  packed = nnx.jit(lambda m: m(jnp.concatenate([a, b], axis=1), positions=positions, segment_ids=segments))(model)
  # Separately: one batch of the two, the first right-padded.
  separate = forward(model, jnp.concatenate([jnp.pad(a, ((0, 0), (0, 2))), b]), None,
                     jnp.arange(7) < jnp.array([[5], [7]]))
  np.testing.assert_allclose(np.asarray(packed[0, :5]), np.asarray(separate[0, :5]), atol=1e-5)
  np.testing.assert_allclose(np.asarray(packed[0, 5:]), np.asarray(separate[1]), atol=1e-5)


@pytest.mark.parametrize("impl,window", [("xla", None), ("xla", 4), pytest.param("pallas", None, marks=pytest.mark.slow)])
def test_cached_decoding_equals_the_full_forward(impl, window):
  """A ragged prompt (the second one 3 tokens of 5, right-padded), then single-token steps: each step continues the
  running sum from the cache's last written token, not from the padding — in a sliding window's ring of 4 slots too,
  where that token's slot is its position mod 4."""
  model = tiny_model("decoder", "fox", attention=dict(impl=impl, window=window, core=dict(block_q=8, block_k=8)
                                                     if impl == "pallas" else {}))
  model = moved_gates(model)
  tokens = random_tokens(1, (2, 10))
  lengths = [5, 3]
  cache = model.init_cache(2, 16)
  prompt, cache = nnx.jit(lambda m, t, c: m.extend(t, c, valid=jnp.arange(5) < jnp.array(lengths)[:, None]))(
      model, tokens[:, :5], cache)
  steps = []
  for t in range(5):
    step, cache = extend(model, tokens[:, 5 + t:6 + t], cache)
    steps.append(step)
  steps = np.asarray(jnp.concatenate(steps, axis=1))
  # The full forward: each prompt's tokens then the steps' tokens, in one right-padded batch.
  sequences = jnp.stack([jnp.pad(jnp.concatenate([tokens[n, :length], tokens[n, 5:]]), (0, 5 - length))
                         for n, length in enumerate(lengths)])
  full = np.asarray(forward(model, sequences, None, jnp.arange(10) < jnp.array(lengths)[:, None] + 5))
  for n, length in enumerate(lengths):
    np.testing.assert_allclose(np.asarray(prompt)[n, :length], full[n, :length], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(steps[n], full[n, length:length + 5], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family,overrides", [("encoder", {}), ("graph", dict(max_hops=0))])
def test_bidirectional_models_refuse_it(family, overrides):
  with pytest.raises(ValueError, match=r"^model: positional encoding 'fox' is defined for causal attention only"):
    models.build(family, tiny("fox", **overrides))
  models.build("encoder", tiny("fox", causal=True, head="token"))  # a causal encoder takes it


@pytest.mark.slow
def test_the_kernels_on_a_mesh_equal_one_device():
  """Under `zoo.sharding.use` the kernels run in shard_map, the running sums split like the queries (batch over data,
  heads over tensor): generation and the loss's gradients equal the unsharded run's."""
  from zoo import sharding  # noqa: PLC0415
  from zoo.train.mesh import make_mesh  # noqa: PLC0415

  model = models.build("decoder", tiny("fox", attention=dict(impl="pallas")), seed=3)
  prompts, tokens = random_tokens(0, (2, 5)), random_tokens(2, (2, 12))
  loss = lambda m: jnp.mean(m(tokens) ** 2)

  def run():
    return (models.generate(model, prompts, max_new_tokens=6, rng=jax.random.key(1)),
            nnx.jit(nnx.value_and_grad(loss))(model))

  (single, (value, grads)) = run()
  with sharding.use(make_mesh((2, 2, 2), jax.devices()), (("batch", ("data",)), ("heads", ("tensor",)))):
    (sharded, (sharded_value, sharded_grads)) = run()
  np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))
  np.testing.assert_allclose(float(sharded_value), float(value), rtol=1e-6)
  for got, want in zip(jax.tree.leaves(sharded_grads), jax.tree.leaves(grads), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
