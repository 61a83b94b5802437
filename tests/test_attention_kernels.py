"""The memory-efficient implementations against the oracle: "chunked" (XLA loops) and "pallas" (flash kernels, in
the Pallas interpreter on CPU) must give `reference_attention`'s outputs (≤ 1e-5) and gradients (≤ 1e-4) for every
registered encoding that hands attention a structured term (`logit_bias` or `prob_scale`), discovered from the
registry, causal and not, with padding, packed segments and lengths that are not multiples of the block."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from zoo import attention, models, positional
from zoo.attention import AlibiBias, AttentionMask, RelativeTable
from zoo.positional import ModelDims

from conftest import TINY, random_tokens

B, L, H, D = 2, 40, 2, 8  # L = 40 is not a multiple of the blocks below
BLOCK = 16
IMPLS = {
    "chunked": functools.partial(attention.chunked_attention, chunk_q=BLOCK, chunk_k=BLOCK),
    "pallas": functools.partial(attention.flash_attention, block_q=BLOCK, block_k=BLOCK),
    "pallas-gpu": functools.partial(attention.flash_attention, block_q=BLOCK, block_k=BLOCK, backend="gpu"),
}


def build_encoding(name, causal, options=None):
  with nnx.use_eager_sharding(False):
    return positional.build(name, options, ModelDims(H, D, H * D, 64, causal), rngs=nnx.Rngs(0))


STRUCTURED = [name for name in positional.available()
              if any(positional.implements(build_encoding(name, False), hook) for hook in ("logit_bias", "prob_scale"))]


def test_registry_has_structured_encodings():
  assert {"alibi", "rpe", "t5_bias", "urpe"} <= set(STRUCTURED)


def inputs():
  """q, k, v [B, L, H, D]; example 0 packs two sequences (positions restart), example 1 starts at position 5 and
  ends in 6 padding tokens."""
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(B, L, H, D)), jnp.float32) for _ in range(3))
  positions = jnp.asarray(np.stack([np.r_[np.arange(25), np.arange(15)], np.arange(L) + 5]))
  segments = jnp.asarray(np.stack([np.r_[np.zeros(25), np.ones(15)], np.zeros(L)]).astype(np.int32))
  valid = jnp.ones((B, L), bool).at[1, -6:].set(False)
  return (q, k, v), positions, segments, valid


def structured_terms(name, causal, positions):
  """The encoding's bias terms and scale at `positions`, every float table randomised (C included: all-ones C
  would hide a wrong C)."""
  encoding = build_encoding(name, causal)
  bias = (encoding.logit_bias(positions, positions),) if positional.implements(encoding, "logit_bias") else ()
  scale = encoding.prob_scale(positions, positions) if positional.implements(encoding, "prob_scale") else None
  rng = np.random.default_rng(1)
  randomise = lambda term: term.replace(**{param_name(term): jnp.asarray(
      rng.normal(size=getattr(term, param_name(term)).shape), jnp.float32) * 0.5})
  return tuple(randomise(t) for t in bias), None if scale is None else randomise(scale)


def param_name(term):
  """The differentiable leaf of a structured term."""
  return {RelativeTable: "table", AlibiBias: "slopes"}[type(term)]


def run(impl, name, causal):
  """Output and gradients (wrt q, k, v and every term's table / slopes) of `impl` on the shared inputs."""
  (q, k, v), positions, segments, valid = inputs()
  bias, scale = structured_terms(name, causal, positions)
  terms = bias + (() if scale is None else (scale,))
  mask = AttentionMask(q_pos=positions, k_pos=positions, q_segment_ids=segments, k_segment_ids=segments,
                       k_valid=valid, causal=causal)
  weights = jnp.asarray(np.random.default_rng(2).normal(size=(B, L, H, D)), jnp.float32)

  @jax.jit
  def loss_and_grads(q, k, v, params):
    def loss(q, k, v, params):
      rebuilt = [t.replace(**{param_name(t): p}) for t, p in zip(terms, params)]
      out = impl(q, k, v, mask=mask, bias=tuple(rebuilt[:len(bias)]),
                 scale=rebuilt[-1] if scale is not None else None)
      return jnp.sum(out * weights), out
    return jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(q, k, v, params)

  (_, out), grads = loss_and_grads(q, k, v, [getattr(t, param_name(t)) for t in terms])
  return out, grads


@functools.cache
def reference(name, causal):
  return run(attention.reference_attention, name, causal)


def assert_close(ours, theirs):
  (out, grads), (ref_out, ref_grads) = ours, theirs
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), atol=1e-5, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("impl", ["chunked", "pallas"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("name", STRUCTURED)
def test_matches_reference_forward_and_gradients(name, causal, impl):
  assert_close(run(IMPLS[impl], name, causal), reference(name, causal))


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_gpu_driver_matches_reference_in_interpret_mode(causal):
  """The Triton-style driver (in-kernel loop over blocks) computes the same numbers; its GPU lowering is untested
  here (no GPU)."""
  assert_close(run(IMPLS["pallas-gpu"], "urpe", causal), reference("urpe", causal))


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["pallas", "pallas-gpu"])
@pytest.mark.parametrize("name", STRUCTURED)
def test_gpu_and_tpu_drivers_on_every_encoding(name, impl):
  for causal in (False, True):
    assert_close(run(IMPLS[impl], name, causal), reference(name, causal))


@pytest.mark.parametrize("impl", ["chunked", "pallas"])
def test_cached_decoding_shape_short_queries_long_cache(impl):
  """3 new queries at positions 20..22 against a 40-slot cache whose slots past 22 are unwritten."""
  (q, k, v), _, _, _ = inputs()
  q_pos = jnp.tile(jnp.arange(20, 23), (B, 1))
  k_pos = jnp.tile(jnp.arange(L), (B, 1))
  mask = AttentionMask(q_pos=q_pos, k_pos=k_pos, k_valid=k_pos <= 22, causal=True)
  encoding = build_encoding("urpe", True, {"bias": "t5_bias"})
  kwargs = dict(mask=mask, bias=(encoding.logit_bias(q_pos, k_pos),), scale=encoding.prob_scale(q_pos, k_pos))
  ours, theirs = (jax.jit(lambda q, k, v, f=f: f(q, k, v, **kwargs))(q[:, :3], k, v)
                  for f in (IMPLS[impl], attention.reference_attention))
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-5)


@functools.cache
def urpe_decoder_logits(impl):
  model = models.build("decoder", dict(TINY, pe="urpe", attention_impl=impl))
  return np.asarray(nnx.jit(lambda m, t: m(t))(model, random_tokens(0, (2, 21))))


@pytest.mark.parametrize("impl", ["chunked", "pallas"])
def test_models_run_with_the_kernels(impl):
  """A URPE decoder gives the same logits with attention_impl = impl as with the reference."""
  np.testing.assert_allclose(urpe_decoder_logits(impl), urpe_decoder_logits("xla"), atol=1e-5)


def test_impls_that_cannot_serve_a_request_say_so():
  (q, k, v), positions, _, _ = inputs()
  mask = AttentionMask(q_pos=positions, k_pos=positions)
  for impl in ("chunked", "pallas"):
    with pytest.raises(ValueError, match=rf"attention impl '{impl}' has no attention dropout.*use impl='xla'"):
      attention.attend(q, k, v, impl=impl, mask=mask, dropout_rate=0.1, dropout_rng=jax.random.key(0))
  alibi_scale = AlibiBias(jnp.ones(H), positions, positions)
  with pytest.raises(ValueError, match=r"'pallas' cannot apply a AlibiBias as a scale term.*use impl='chunked' or"):
    attention.flash_attention(q, k, v, mask=mask, scale=alibi_scale)
  with pytest.raises(ValueError, match=r"'chunked' cannot evaluate a ndarray term tile by tile.*use impl='xla'"):
    attention.chunked_attention(q, k, v, mask=mask, bias=(np.zeros((B, H, L, L)),))
  with pytest.raises(ValueError, match=r"unknown pallas backend 'cuda'; valid choices: tpu, gpu"):
    attention.flash_attention(q, k, v, mask=mask, backend="cuda")


def test_auto_picks_by_platform_length_and_dropout():
  assert attention.auto_choice(512, 512, platform="cpu") == "xla"
  assert attention.auto_choice(8192, 8192, platform="cpu") == "chunked"
  assert attention.auto_choice(512, 512, platform="tpu") == "pallas"
  assert attention.auto_choice(8192, 8192, platform="gpu") == "pallas"
  assert attention.auto_choice(8192, 8192, dropout_rate=0.1, platform="tpu") == "xla"
