"""The memory-efficient implementations against the oracle: every declared core other than "xla" (chunked XLA loops,
Pallas flash kernels in the interpreter on CPU) must give `reference_attention`'s outputs (≤ 1e-5) and gradients
(≤ 1e-4, with respect to q, k, v and every array of every term) for every registered encoding that hands attention
structured terms and every core that declares it serves them — discovered from the registries, causal and not, with
padding, packed segments and lengths that are not multiples of the block."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from zoo import attention, models, positional
from zoo.attention import AttentionMask, RelationTable, RelativeTable
from zoo.attention.bias import consecutive
from zoo.positional import Coordinates, Graph, ModelDims
from zoo.positional.relative_bias import LagIndex

from conftest import default_or_slow, random_tokens, representative_or_slow, tiny
from launch import bench_lookup  # the tile lookup it times, here checked

B, L, H, D = 2, 40, 2, 8  # L = 40 is not a multiple of the blocks below
BLOCK = 16
# Small tiles, so that every call walks several blocks.
TILE_OPTIONS = {"chunked": dict(chunk_q=BLOCK, chunk_k=BLOCK), "pallas": dict(block_q=BLOCK, block_k=BLOCK)}
FAST_CORES = [name for name in attention.CORES if name != "xla" and attention.CORES[name].terms]
PALLAS_GPU = functools.partial(attention.flash_attention, block_q=BLOCK, block_k=BLOCK, backend="gpu")


def build_encoding(name, causal, options=None):
  with nnx.use_eager_sharding(False):
    return positional.build(name, options, ModelDims(H, D, H * D, 64, causal), rngs=nnx.Rngs(0))


def perturbed(encoding, seed=1, scale=0.5):
  """The encoding with every parameter moved off its initial value (C ≠ 1, biases not tiny)."""
  keys = iter(jax.random.split(jax.random.key(seed), 1000))
  nnx.update(encoding, jax.tree.map(lambda x: x + scale * jax.random.normal(next(keys), x.shape),
                                    nnx.state(encoding, nnx.Param)))
  return encoding


def random_graph():
  """A random relation for encodings that read one: SPD values (with unreachable / graph-token codes), degrees and an
  edge bias."""
  rng = np.random.default_rng(3)
  return Graph(spd=jnp.asarray(rng.integers(-2, 8, (B, L, L)), jnp.int32),
               in_degree=jnp.asarray(rng.integers(0, 4, (B, L)), jnp.int32),
               out_degree=jnp.asarray(rng.integers(0, 4, (B, L)), jnp.int32),
               edge_bias=jnp.asarray(rng.normal(size=(B, H, L, L)), jnp.float32))


def structured_terms(name, causal, graph=False):
  """The encoding's bias terms and scale (perturbed parameters), with a random relation when `graph` and random
  attention input (a term of the tokens reads it: FoX). Positions do not matter here: terms are evaluated at the
  attention call's positions."""
  features = jnp.asarray(np.random.default_rng(4).normal(size=(B, L, H * D)), jnp.float32)
  coords = Coordinates(jnp.zeros((B, L), jnp.int32), random_graph() if graph else None, features)
  return positional.attention_terms(perturbed(build_encoding(name, causal)), coords, coords)


def variants(name):
  """(name, graph) pairs: the sequence reading of every encoding, and the graph reading of those that read one."""
  return [(name, False)] + ([(name, True)] if positional.get(name).reads_relation else [])


def has_terms(name):
  bias, scale = structured_terms(name, False)
  return bool(bias) or scale is not None


STRUCTURED = [name for name in positional.available() if has_terms(name)]
CASES = [(name, graph, impl) for name in STRUCTURED for _, graph in variants(name) for impl in FAST_CORES
         if attention.CORES[impl].refusal(*structured_terms(name, False, graph), 0.0) is None]


def test_registry_has_structured_encodings_and_kernels_serve_them():
  assert {"alibi", "rpe", "t5_bias", "urpe"} <= set(STRUCTURED)
  assert {(n, False, "pallas") for n in ("alibi", "rpe", "t5_bias", "urpe")} <= set(CASES)
  assert ("spd_urpe", True, "chunked") in CASES and ("spd_urpe", True, "pallas") not in CASES


def inputs():
  """q, k, v [B, L, H, D]; example 0 packs two sequences (positions restart), example 1 starts at position 5 and
  ends in 6 padding tokens."""
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(B, L, H, D)), jnp.float32) for _ in range(3))
  positions = jnp.asarray(np.stack([np.r_[np.arange(25), np.arange(15)], np.arange(L) + 5]))
  segments = jnp.asarray(np.stack([np.r_[np.zeros(25), np.ones(15)], np.zeros(L)]).astype(np.int32))
  valid = jnp.ones((B, L), bool).at[1, -6:].set(False)
  return (q, k, v), positions, segments, valid


def run(impl, name, causal, graph=False):
  """Output and gradients (wrt q, k, v and every array of every term) of `impl` on the shared inputs."""
  (q, k, v), positions, segments, valid = inputs()
  leaves, treedef = jax.tree.flatten(structured_terms(name, causal, graph))
  differentiable = [jnp.issubdtype(leaf.dtype, jnp.floating) for leaf in leaves]  # not a relation's integers
  mask = AttentionMask(q_pos=positions, k_pos=positions, q_segment_ids=segments, k_segment_ids=segments,
                       k_valid=valid, causal=causal)
  weights = jnp.asarray(np.random.default_rng(2).normal(size=(B, L, H, D)), jnp.float32)

  @jax.jit
  def loss_and_grads(q, k, v, floats):
    def loss(q, k, v, floats):
      values = iter(floats)
      rebuilt = [next(values) if d else leaf for leaf, d in zip(leaves, differentiable)]
      bias, scale = jax.tree.unflatten(treedef, rebuilt)
      out = impl(q, k, v, mask=mask, bias=bias, scale=scale)
      return jnp.sum(out * weights), out
    return jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(q, k, v, floats)

  (_, out), grads = loss_and_grads(q, k, v, [leaf for leaf, d in zip(leaves, differentiable) if d])
  return out, grads


def core_fn(impl):
  return functools.partial(attention.attend, impl=impl, **TILE_OPTIONS.get(impl, {}))


@functools.cache
def reference(name, causal, graph=False):
  return run(attention.reference_attention, name, causal, graph)


def assert_close(ours, theirs):
  (out, grads), (ref_out, ref_grads) = ours, theirs
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), atol=1e-5, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4)


# The default suite runs every core on the representative encodings (one per term type), causal (decoders); the slow
# suite every case, and the bidirectional variant of every case (the default keeps it for URPE in the GPU-driver test
# below).
@pytest.mark.parametrize("causal", [pytest.param(False, marks=pytest.mark.slow), True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("name,graph,impl", [representative_or_slow(name, name, graph, impl)
                                             for name, graph, impl in CASES])
def test_matches_reference_forward_and_gradients(name, graph, impl, causal):
  assert_close(run(core_fn(impl), name, causal, graph), reference(name, causal, graph))


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_gpu_driver_matches_reference_in_interpret_mode(causal):
  """The Triton-style driver (in-kernel loop over blocks) computes the same numbers; its GPU lowering is untested
  here (no GPU)."""
  assert_close(run(PALLAS_GPU, "urpe", causal), reference("urpe", causal))


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, graph, impl in CASES if impl == "pallas"])
def test_gpu_driver_on_every_kernel_encoding(name):
  for causal in (False, True):
    assert_close(run(PALLAS_GPU, name, causal), reference(name, causal))


@pytest.mark.parametrize("impl", FAST_CORES)
def test_cached_decoding_shape_short_queries_long_cache(impl):
  """3 new queries at positions 20..22 against a 40-slot cache whose slots past 22 are unwritten."""
  (q, k, v), _, _, _ = inputs()
  q_pos = jnp.tile(jnp.arange(20, 23), (B, 1))
  k_pos = jnp.tile(jnp.arange(L), (B, 1))
  mask = AttentionMask(q_pos=q_pos, k_pos=k_pos, k_valid=k_pos <= 22, causal=True)
  encoding = build_encoding("urpe", True, {"bias": "t5_bias"})
  bias, scale = positional.attention_terms(encoding, Coordinates(q_pos), Coordinates(k_pos))
  kwargs = dict(mask=mask, bias=bias, scale=scale)
  ours, theirs = (jax.jit(lambda q, k, v, f=f: f(q, k, v, **kwargs))(q[:, :3], k, v)
                  for f in (core_fn(impl), attention.reference_attention))
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-5)


# ---- The TPU kernels' table lookup: a lag window skewed into the tile (one strided rotation), any other tile by
# selects. Checked on single [128, 128] tiles against numpy indexing, then through the whole kernel at 128 blocks.
LOOKUP_INDEXES = {"per-lag": LagIndex("clip", 200), "clipped": LagIndex("clip", 20),
                  "t5 bidirectional": LagIndex("t5", 128, 32, True), "t5 causal": LagIndex("t5", 128, 32, False)}
# (first query position, first key position): diagonal, below, above, far (lags clipped); None: scattered keys.
LOOKUP_TILES = {"diagonal": (0, 0), "below": (128, 0), "above": (0, 384), "far": (1000, 3), "scattered": None}


@pytest.mark.parametrize("index", default_or_slow(LOOKUP_INDEXES, ("per-lag", "t5 causal")))
def test_the_window_lookup_reads_and_differentiates_the_table_like_numpy_indexing(index):
  index, bq = LOOKUP_INDEXES[index], 128
  rng = np.random.default_rng(0)
  table = jnp.asarray(rng.normal(size=(1, 512)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(bq, bq)), jnp.float32)
  term = RelativeTable(None, index).static("tpu")
  for tile, first in LOOKUP_TILES.items():
    if first is None:
      q_pos, k_pos = np.arange(bq)[:, None], rng.integers(0, 300, (1, bq))
    else:
      q_pos, k_pos = first[0] + np.arange(bq)[:, None], first[1] + np.arange(bq)[None]
    q_pos, k_pos = jnp.asarray(q_pos, jnp.int32), jnp.asarray(k_pos, jnp.int32)
    assert bool(consecutive(q_pos, k_pos)) == (first is not None), tile
    assert term.lookup == "window" and term.windowed(bq)
    values, grad = bench_lookup.lookup(term, table, q_pos, k_pos, g)
    rows = np.asarray(index(k_pos - q_pos))
    np.testing.assert_array_equal(np.asarray(values), np.asarray(table)[0, rows], err_msg=tile)
    want = np.zeros(512)
    np.add.at(want, rows.ravel(), np.asarray(g, np.float64).ravel())
    np.testing.assert_allclose(np.asarray(grad)[0], want, atol=1e-4, err_msg=tile)


@pytest.mark.slow  # the longest default test (244 s on the loaded 2 cores); the default suite keeps the window lookup
@pytest.mark.parametrize("name", ["urpe", "t5_bias"])  # on single 128 tiles (above) and every core at 16-blocks
def test_128_blocks_take_the_window_lookup_and_match_the_reference(name):
  """Blocks of 128 (TPU's): the window lookup on whole-run tiles, the select one where example 0's packed second
  sequence restarts its positions mid-tile; 256 tokens, example 1 offset by 5 with 6 padding tokens."""
  length, causal = 256, True
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(B, length, H, D)), jnp.float32) for _ in range(3))
  positions = jnp.asarray(np.stack([np.r_[np.arange(150), np.arange(106)], np.arange(length) + 5]))
  segments = jnp.asarray(np.stack([np.r_[np.zeros(150), np.ones(106)], np.zeros(length)]).astype(np.int32))
  mask = AttentionMask(q_pos=positions, k_pos=positions, q_segment_ids=segments, k_segment_ids=segments,
                       k_valid=jnp.ones((B, length), bool).at[1, -6:].set(False), causal=causal)
  encoding = perturbed(build_encoding(name, causal))
  coords = Coordinates(positions)

  def loss(impl, q, k, v, encoding):
    bias, scale = positional.attention_terms(encoding, coords, coords)
    return jnp.sum(impl(q, k, v, mask=mask, bias=bias, scale=scale) ** 2)

  grads = lambda impl: nnx.grad(functools.partial(loss, impl), argnums=(0, 1, 2, 3))(q, k, v, encoding)
  kernel = functools.partial(attention.flash_attention, block_q=128, block_k=128, backend="tpu")
  ours, theirs = grads(kernel), grads(attention.reference_attention)
  for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4)


@functools.cache
def urpe_decoder_logits(impl):
  model = models.build("decoder", tiny("urpe", attention=dict(impl=impl)))
  return np.asarray(nnx.jit(lambda m, t: m(t))(model, random_tokens(0, (2, 21))))


@pytest.mark.parametrize("impl", FAST_CORES)
def test_models_run_with_the_kernels(impl):
  """A URPE decoder gives the same logits with attention.impl = impl as with the reference."""
  np.testing.assert_allclose(urpe_decoder_logits(impl), urpe_decoder_logits("xla"), atol=1e-5)


def test_impls_that_cannot_serve_a_request_say_so():
  (q, k, v), positions, _, _ = inputs()
  mask = AttentionMask(q_pos=positions, k_pos=positions)
  for impl in FAST_CORES:
    with pytest.raises(ValueError, match=rf"attention impl '{impl}' has no attention dropout.*use impl='xla'"):
      attention.attend(q, k, v, impl=impl, mask=mask, dropout_rate=0.1, dropout_rng=jax.random.key(0))
  relation = RelationTable(jnp.ones((H, 3)), jnp.zeros((B, L, L), jnp.int32))
  refusing = [name for name, core in attention.CORES.items() if not core.serves(relation)]
  assert "pallas" in refusing
  for impl in refusing:
    with pytest.raises(ValueError, match=rf"'{impl}' cannot evaluate a RelationTable term; use impl='chunked' or "
                                         rf"'xla'"):
      attention.attend(q, k, v, impl=impl, mask=mask, bias=(relation,))
  with pytest.raises(ValueError, match=r"unknown pallas backend 'cuda'; valid choices: tpu, gpu"):
    attention.flash_attention(q, k, v, mask=mask, backend="cuda")


def test_auto_picks_by_platform_length_and_dropout():
  assert attention.auto_choice(512, 512, platform="cpu") == "xla"
  assert attention.auto_choice(8192, 8192, platform="cpu") == "chunked"
  assert attention.auto_choice(512, 512, platform="tpu") == "pallas"
  assert attention.auto_choice(8192, 8192, platform="gpu") == "pallas"
  assert attention.auto_choice(8192, 8192, dropout_rate=0.1, platform="tpu") == "xla"
