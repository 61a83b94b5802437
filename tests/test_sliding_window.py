"""Sliding-window attention (`model.attention.window`): the mask against its definition written out in numpy, every
softmax core against the XLA reference (forward and gradients), linear attention against the windowed kernel sum
written out, the kernels skipping the blocks behind the window, cached decoding past the window with a ring of
`window` slots in every core, Mistral's and Qwen2's `sliding_window` imported and exported, the refusals and the
`launch.extrapolate` row."""

import functools
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors import numpy as safetensors_numpy

from conftest import default_or_slow, forward, random_tokens, tiny, tiny_model
from test_hf_convert import (EXPORT_TOLERANCE, HF, assert_initialised_like, assert_parity,
                             assert_reimport_computes_the_same, outputs, params_of, reference)
from zoo import attention, models, positional, pretrained
from zoo.attention import AttentionMask
from zoo.convert import hf
from zoo.experiments import Options, get
from zoo.experiments.extrapolate import DEFAULT_ENCODINGS, SETUPS, WINDOW
from zoo.models.config import merge
from zoo.positional import Coordinates, ModelDims

B, L, H, KV, D, W = 2, 40, 2, 1, 8, 7  # L is not a multiple of the blocks; W not a divisor of anything
BLOCK = 16
# Each core's way of being called with small tiles (so a call walks several blocks); pallas in both drivers.
CORES = {"chunked": dict(impl="chunked", chunk_q=BLOCK, chunk_k=BLOCK),
         "pallas": dict(impl="pallas", block_q=BLOCK, block_k=BLOCK),
         "pallas_gpu": dict(impl="pallas", block_q=BLOCK, block_k=BLOCK, backend="gpu")}


def window_mask_by_definition(q_pos, k_pos, window, valid):
  """[batch, q_len, k_len]: the query at position i sees the key at position j iff i − window < j ≤ i (and the key
  is valid) — Hugging Face's sliding-window causal mask, `kv_idx > q_idx - sliding_window` and `kv_idx <= q_idx`."""
  allowed = np.zeros((q_pos.shape[0], q_pos.shape[1], k_pos.shape[1]), bool)
  for b in range(q_pos.shape[0]):
    for i, qp in enumerate(q_pos[b]):
      for j, kp in enumerate(k_pos[b]):
        allowed[b, i, j] = (qp - window < kp <= qp) and valid[b, j]
  return allowed


def inputs():
  """q [B, L, H, D], k / v [B, L, KV, D] (grouped query heads); example 0 packs two sequences (positions restart),
  example 1 starts at position 5 and ends in 6 padding tokens."""
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(B, L, H, D)), jnp.float32)
  k, v = (jnp.asarray(rng.normal(size=(B, L, KV, D)), jnp.float32) for _ in range(2))
  positions = jnp.asarray(np.stack([np.r_[np.arange(25), np.arange(15)], np.arange(L) + 5]))
  segments = jnp.asarray(np.stack([np.r_[np.zeros(25), np.ones(15)], np.zeros(L)]).astype(np.int32))
  valid = jnp.ones((B, L), bool).at[1, -6:].set(False)
  mask = AttentionMask(q_pos=positions, k_pos=positions, q_segment_ids=segments, k_segment_ids=segments,
                       k_valid=valid, causal=True, window=W)
  return (q, k, v), mask


def test_the_window_mask_is_the_definition():
  _, mask = inputs()
  got = np.asarray(mask.dense())[:, 0]
  want = window_mask_by_definition(np.asarray(mask.q_pos), np.asarray(mask.k_pos), W, np.asarray(mask.k_valid))
  want &= np.asarray(mask.q_segment_ids)[:, :, None] == np.asarray(mask.k_segment_ids)[:, None, :]
  np.testing.assert_array_equal(got, want)
  assert got[1, :-6].sum(axis=1).max() == W  # a full row sees exactly `window` keys, its own included


@pytest.mark.parametrize("family,config,message", [
    ("decoder", dict(attention=dict(window=0)), r"^model.attention: window must be None \(no window\) or >= 1, got 0$"),
    ("encoder", dict(attention=dict(window=4)), r"^model: attention.window needs causal attention \(the decoder "
                                                r"family, or the encoder family's causal=True\), got window=4$"),
])
def test_a_window_a_model_cannot_have_is_a_one_line_error(family, config, message):
  with pytest.raises(ValueError, match=message):
    models.parse_config(family, tiny(**config))
  models.parse_config("encoder", tiny(attention=dict(window=4), causal=True, head="token"))  # a causal encoder can


def t5_bias_terms():
  """A table term (T5's buckets, table moved off its initial value), so the kernels' table gradients are checked on
  skipped tiles too."""
  with nnx.use_eager_sharding(False):
    encoding = positional.build("t5_bias", None, ModelDims(H, D, H * D, 64, True), rngs=nnx.Rngs(0))
  nnx.update(encoding, jax.tree.map(lambda x: x + jax.random.normal(jax.random.key(1), x.shape),
                                    nnx.state(encoding, nnx.Param)))
  coords = Coordinates(jnp.zeros((B, L), jnp.int32))
  return positional.attention_terms(encoding, coords, coords)[0]


def run(options):
  """Output and gradients wrt q, k, v and the bias table of one windowed call."""
  (q, k, v), mask = inputs()
  bias = t5_bias_terms()
  weights = jnp.asarray(np.random.default_rng(2).normal(size=(B, L, H, D)), jnp.float32)

  @jax.jit
  def loss_and_grads(q, k, v, bias):
    def loss(q, k, v, bias):
      out = attention.attend(q, k, v, mask=mask, bias=bias, **options)
      return jnp.sum(out * weights), out
    return jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(q, k, v, bias)

  (_, out), grads = loss_and_grads(q, k, v, bias)
  return out, grads


@functools.cache
def xla_reference():
  return run(dict(impl="xla"))


@pytest.mark.parametrize("core", default_or_slow(CORES, ("pallas",)))
def test_every_core_matches_the_reference_forward_and_gradients(core):
  (out, grads), (ref_out, ref_grads) = run(CORES[core]), xla_reference()
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), atol=1e-5, rtol=0)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)


@pytest.mark.parametrize("core", default_or_slow(CORES, ("pallas",)))
def test_blocks_behind_the_window_are_skipped(core):
  """NaN values in the first key block: a block that is computed spreads them (0 · NaN = NaN, as the XLA reference
  shows), so the finite outputs and query gradients of the rows whose window starts after that block prove the
  kernels never touched it, forward and backward."""
  length = 4 * BLOCK
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(1, length, H, D)), jnp.float32) for _ in range(3))
  v = v.at[:, :BLOCK].set(jnp.nan)
  positions = jnp.arange(length)[None]
  mask = AttentionMask(q_pos=positions, k_pos=positions, causal=True, window=W)
  late = slice(2 * BLOCK, None)  # query blocks 2 and 3: their windows start at 26 and 42, past key block 0

  def late_rows(options):
    call = lambda q: attention.attend(q, k, v, mask=mask, **options)
    return call(q)[:, late], jax.grad(lambda q: call(q)[:, late].sum())(q)[:, late]

  assert not np.isfinite(np.asarray(late_rows(dict(impl="xla"))[0])).all()  # the reference computes every block
  out, dq = late_rows(CORES[core])
  assert np.isfinite(np.asarray(out)).all() and np.isfinite(np.asarray(dq)).all()


def test_linear_attention_sums_its_kernel_over_the_window_exactly():
  """φ(q_i)·φ(k_j) v_j summed over the window (relu features φ(x) = relu(x) + 1e-3) and normalised: the definition in
  numpy for the output; for the gradients, the same definition dense in jnp, differentiated by JAX."""
  (q, k, v), mask = inputs()
  mask = mask.replace(q_segment_ids=None, k_segment_ids=None, q_pos=mask.q_pos.at[0].set(jnp.arange(L)))
  mask = mask.replace(k_pos=mask.q_pos)
  features = lambda x: np.maximum(np.asarray(x, np.float64), 0) + 1e-3
  allowed = window_mask_by_definition(np.asarray(mask.q_pos), np.asarray(mask.k_pos), W, np.asarray(mask.k_valid))
  kernel = np.einsum("bihd,bjd->bhij", features(q), features(k)[:, :, 0]) * allowed[:, None]
  want = np.einsum("bhij,bjd->bihd", kernel, np.asarray(v, np.float64)[:, :, 0]) / kernel.sum(-1).transpose(0, 2, 1)[
      ..., None]
  windowed = jax.jit(lambda q, k, v: attention.attend(q, k, v, impl="linear", feature_map="relu", mask=mask))
  np.testing.assert_allclose(np.asarray(windowed(q, k, v)), want, atol=1e-5, rtol=0)

  def dense(q, k, v):
    phi = lambda x: jax.nn.relu(x) + 1e-3
    kernel = jnp.einsum("bihd,bjd->bhij", phi(q), phi(k)[:, :, 0]) * allowed[:, None]
    return jnp.einsum("bhij,bjd->bihd", kernel, v[:, :, 0]) / kernel.sum(-1).transpose(0, 2, 1)[..., None]

  weights = jnp.asarray(np.random.default_rng(2).normal(size=(B, L, H, D)), jnp.float32)
  grads = lambda fn: jax.jit(jax.grad(lambda *qkv: jnp.sum(fn(*qkv) * weights), argnums=(0, 1, 2)))(q, k, v)
  for got, want in zip(grads(windowed), grads(dense), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)


@pytest.mark.slow  # 14 s on the loaded 2 cores
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu is not installed: no TPU compiler")
def test_the_windowed_kernels_compile_for_tpu():
  """Mosaic lowers the window's mask and tile skipping, forward and backward (v5e, blocks of 128, a window of 256)."""
  from test_tpu_compile import compile_train_step  # noqa: PLC0415 — sets up libtpu's loading first
  assert compile_train_step("v5e:2x2", "alibi", causal=True, window=256).memory_analysis() is not None


# ---- Cached decoding: a ring of `window` slots ------------------------------------------------------------------
DECODING = {"xla": dict(impl="xla"), "chunked": dict(impl="chunked", core=dict(chunk_q=8, chunk_k=8)),
            "pallas": dict(impl="pallas", core=dict(block_q=8, block_k=8)),
            "linear": dict(impl="linear", core=dict(feature_map="favor", num_features=16))}
DECODE_WINDOW = 5


@pytest.mark.parametrize("core", default_or_slow(DECODING, ("xla",)))
def test_cached_decoding_keeps_the_window_and_equals_the_full_forward_past_it(core):
  """A prefill longer than the window (it attends over all of its own keys) and single-token steps far past the
  window give the full forward's logits, though each layer's cache has only `window` slots; greedy generation from
  ragged prompts (one shorter than the window) picks the full forward's argmax at every step."""
  model = tiny_model("decoder", "rope", attention=dict(DECODING[core], window=DECODE_WINDOW))
  model.eval()
  tokens = random_tokens(4, (2, 20))
  cache = model.init_cache(2, 24)
  assert cache.layers[0].k.shape[1] == DECODE_WINDOW
  extend = nnx.jit(lambda m, t, c: m.extend(t, c))
  pieces = []
  for start, stop in [(0, 8)] + [(t, t + 1) for t in range(8, 20)]:
    logits, cache = extend(model, tokens[:, start:stop], cache)
    pieces.append(np.asarray(logits))
  full = np.asarray(forward(model, tokens, None, None))
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=0, atol=1e-5)
  prompts, lengths = tokens[:, :8], jnp.array([8, 3])
  generated = models.generate(model, prompts, prompt_lengths=lengths, max_new_tokens=10, rng=jax.random.key(0))
  for row, length in enumerate(lengths.tolist()):  # each generated token: the full forward's argmax before it
    sequence = jnp.concatenate([prompts[row:row + 1, :length], generated[row:row + 1]], axis=1)
    greedy = np.argmax(np.asarray(forward(model, sequence, None, None))[0, length - 1:-1], axis=-1)
    np.testing.assert_array_equal(np.asarray(generated[row]), greedy)


# ---- Hugging Face: Mistral's and Qwen2's sliding_window, imported and exported ----------------------------------
@pytest.mark.parametrize("name", ["mistral_window", "qwen2_window"])
def test_windowed_checkpoints_import_with_logit_parity_past_the_window(name):
  """Tiny random models made by transformers with sliding_window=8, on 24-token inputs: zoo's logits equal theirs
  (≤ 1e-5); the same parameters without the window do not, so the fixture exercises it."""
  family, options, params = hf.read(HF / name)
  assert options["attention"]["window"] == 8
  ref = reference(name)
  windowed = pretrained.build(dict(model_name=family, model=options), params)
  assert_parity(outputs(windowed, ref, name), ref, EXPORT_TOLERANCE)
  unwindowed = pretrained.build(dict(model_name=family, model=dict(options, attention={**options["attention"],
                                                                                     "window": None})), params)
  assert np.abs(outputs(unwindowed, ref, name) - ref["logits"])[ref["mask"]].max() > 1e-3


def test_a_windowed_decoder_exports_as_mistral_and_reimports_identically(tmp_path):
  """zoo's windowed decoder written as Mistral (`sliding_window`): transformers computed the committed fixture's
  logits from it (≤ 1e-5 to zoo's), today's export writes the same tensors, and reading it back gives the model."""
  spec = json.loads((HF / "export_mistral_window" / "zoo_model.json").read_text())
  model = models.build(spec["family"], spec["options"], seed=spec["seed"])
  model.eval()
  ref = reference("export_mistral_window")
  assert_parity(outputs(model, ref, "decoder"), ref, EXPORT_TOLERANCE)
  hf.write(spec["family"], spec["options"], params_of(model), tmp_path)
  config = json.loads((tmp_path / hf.CONFIG).read_text())
  assert (config["model_type"], config["sliding_window"]) == ("mistral", 8)
  written, committed = (safetensors_numpy.load_file(str(d / hf.WEIGHTS))
                        for d in (tmp_path, HF / "export_mistral_window"))
  assert_initialised_like(written, committed)
  assert_reimport_computes_the_same(tmp_path, model, spec["options"], ref)


# ---- launch.extrapolate: a windowed row ---------------------------------------------------------------------------
def test_extrapolate_has_a_windowed_row_that_builds():
  """`rope+window` (a default row) trains RoPE with a window of WINDOW positions from scratch; its model, as the row
  evaluates it (chunked core, 16 L positions), runs past the window; `<encoding>+window` takes any encoding."""
  experiment = get("extrapolate")
  assert "rope+window" in DEFAULT_ENCODINGS and experiment.check(Options(encodings=("none+window",))) is None
  assert experiment.check(Options(encodings=("bogus+window",))).startswith("unknown encoding 'bogus+window'")
  [run] = experiment.runs("tiny", Options(encodings=("rope+window",), steps=2))
  assert run.name == "rope+window" and not run.init_from
  options = merge(run.config["model"], dict(vocab_size=256, max_length=16 * SETUPS["tiny"].length))
  model = models.build("decoder", options, seed=0)
  assert model.config.attention.window == WINDOW and model.config.attention.impl == "chunked"
  assert forward(model, random_tokens(0, (1, 4 * WINDOW), 256), None, None).shape == (1, 4 * WINDOW, 256)
