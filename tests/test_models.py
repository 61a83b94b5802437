"""The encoder and decoder families: heads, padding and packing semantics, block variants, generation."""

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import REPRESENTATIVE_ENCODINGS, TINY, extend, forward, per_token_options, random_tokens, tiny_model
from zoo import models, positional
from zoo.models import sampling
from zoo.train import step


@pytest.mark.parametrize("head,pooling,shape", [("token", "mean", (3, 10, 5)), ("sequence", "mean", (3, 5)),
                                                ("sequence", "cls", (3, 5))])
def test_encoder_heads_and_padding_invariance(head, pooling, shape):
  model = tiny_model("encoder", "t5_bias", head=head, pooling=pooling, num_classes=5)
  tokens = random_tokens(0, (3, 10))
  mask = jnp.arange(10)[None] < jnp.array([[10], [6], [3]])
  out = forward(model, tokens, None, mask)
  assert out.shape == shape
  # Whatever sits in the padding changes nothing on the real tokens.
  noisy = jnp.where(mask, tokens, (tokens + 7) % 32)
  again = forward(model, noisy, None, mask)
  if head == "token":
    np.testing.assert_allclose(np.asarray(again)[np.asarray(mask)], np.asarray(out)[np.asarray(mask)], atol=1e-5)
  else:
    np.testing.assert_allclose(np.asarray(again), np.asarray(out), atol=1e-5)


def test_dual_encoder_scores_pairs_and_is_one_tower():
  model = tiny_model("encoder", "rope", head="dual", num_classes=3)
  pairs = random_tokens(1, (4, 2, 9))
  logits = forward(model, pairs, None, None)
  assert logits.shape == (4, 3)
  # Swapping the sides of a pair changes the features [u, v, u·v, u−v], so the logits (generally) change.
  assert not np.allclose(np.asarray(forward(model, pairs[:, ::-1], None, None)), np.asarray(logits))
  with pytest.raises(ValueError, match=r"expects tokens \[batch, 2, length\]"):
    model(pairs[:, 0])


@pytest.mark.parametrize("family,pe", [("decoder", "rope"), ("encoder", "urpe")]
                         + [pytest.param(f, p, marks=pytest.mark.slow) for f, p in [("encoder", "rope"),
                            ("decoder", "urpe"), ("encoder", "learned"), ("decoder", "learned")]])
def test_packed_sequences_equal_separate_ones(family, pe):
  model = tiny_model(family, pe, **per_token_options(family))
  a, b = random_tokens(2, (1, 5)), random_tokens(3, (1, 7))
  packed = jnp.concatenate([a, b], axis=1)
  positions = jnp.concatenate([jnp.arange(5), jnp.arange(7)])[None]
  segments = jnp.array([[1] * 5 + [2] * 7])
  out = nnx.jit(lambda m: m(packed, positions=positions, segment_ids=segments))(model)
  np.testing.assert_allclose(np.asarray(out[:, :5]), np.asarray(forward(model, a, None, None)), atol=1e-5)
  np.testing.assert_allclose(np.asarray(out[:, 5:]), np.asarray(forward(model, b, None, None)), atol=1e-5)


@pytest.mark.parametrize("overrides", [dict(norm=dict(position="post")),
                                       dict(mlp=dict(activation="swiglu"), norm=dict(kind="rmsnorm")),
                                       dict(tie_embeddings=False), dict(attention=dict(head_dim=4), mlp=dict(dim=24)),
                                       dict(dropout=0.1, attention=dict(dropout=0.1))])
def test_decoder_variants_run_and_stay_causal(overrides):
  model = tiny_model("decoder", "alibi", **overrides)
  model.eval()  # dropout off: outputs are deterministic
  tokens = random_tokens(4, (2, 8))
  changed = tokens.at[:, 5:].set(0)
  a, b = forward(model, tokens, None, None), forward(model, changed, None, None)
  assert np.all(np.isfinite(np.asarray(a)))
  np.testing.assert_allclose(np.asarray(a[:, :5]), np.asarray(b[:, :5]), atol=1e-5)


def test_dropout_is_active_in_training_and_off_in_eval():
  model = tiny_model("decoder", "rope", dropout=0.2, attention=dict(dropout=0.2))
  tokens = random_tokens(5, (2, 8))
  assert not np.allclose(np.asarray(model(tokens)), np.asarray(model(tokens)))
  model.eval()
  np.testing.assert_array_equal(np.asarray(model(tokens)), np.asarray(model(tokens)))


def test_bfloat16_compute_keeps_float32_parameters():
  model = tiny_model("decoder", "urpe", dtype="bfloat16")
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
  logits = forward(model, random_tokens(6, (2, 8)), None, None)
  assert logits.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(logits)))


def greedy_by_full_forward(model, prompt, steps):
  tokens = prompt
  for _ in range(steps):
    next_token = jnp.argmax(forward(model, tokens, None, None)[:, -1], axis=-1)
    tokens = jnp.concatenate([tokens, next_token[:, None].astype(tokens.dtype)], axis=1)
  return tokens[:, prompt.shape[1]:]


@pytest.mark.parametrize("pe", ["urpe", pytest.param("t5_bias", marks=pytest.mark.slow),
                                pytest.param("learned", marks=pytest.mark.slow)])
def test_greedy_generation_with_ragged_prompts_equals_full_recompute(pe):
  model = tiny_model("decoder", pe)
  prompts = random_tokens(7, (2, 6))
  lengths = jnp.array([6, 3])
  generated = models.generate(model, prompts, prompt_lengths=lengths, max_new_tokens=5, rng=jax.random.key(0))
  assert generated.shape == (2, 5)
  np.testing.assert_array_equal(np.asarray(generated[:1]), np.asarray(greedy_by_full_forward(model, prompts[:1], 5)))
  np.testing.assert_array_equal(np.asarray(generated[1:]),
                                np.asarray(greedy_by_full_forward(model, prompts[1:, :3], 5)))


def test_sampling_is_reproducible_given_the_key_and_stops_at_eos():
  model = tiny_model("decoder", "rope")
  prompts = random_tokens(8, (3, 4))
  run = lambda key, **kw: models.generate(model, prompts, max_new_tokens=12, rng=key, temperature=1.0, **kw)
  a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  eos = int(a[0, 2])
  stopped = np.asarray(run(jax.random.key(1), eos_id=eos, pad_id=31))
  first = int(np.argmax(stopped[0] == eos))
  assert first <= 2 and np.all(stopped[0, first + 1:] == 31)


def test_top_k_and_top_p_keep_the_right_tokens():
  logits = jnp.log(jnp.array([[0.5, 0.25, 0.15, 0.1]]))
  kept = lambda **kw: np.isfinite(np.asarray(sampling.filter_logits(logits, **kw)))[0].tolist()
  assert kept(top_k=2) == [True, True, False, False]
  assert kept(top_p=0.5) == [True, False, False, False]
  assert kept(top_p=0.7) == [True, True, False, False]
  assert kept(top_p=0.76) == [True, True, True, False]
  draws = jax.vmap(lambda key: sampling.sample(logits, key, temperature=1.0, top_k=2))(
      jax.random.split(jax.random.key(0), 3000))
  assert set(np.unique(np.asarray(draws))) == {0, 1}
  assert np.mean(np.asarray(draws) == 0) == pytest.approx(2 / 3, abs=0.03)


def hooks_linear_attention_cannot_apply(pe):
  """The hooks that give a sequence model attention terms (graph encodings' `logit_bias` gives a sequence none)."""
  with nnx.use_eager_sharding(False):
    encoding = positional.build(pe, None, positional.ModelDims(2, 4, 8, 16, False), rngs=nnx.Rngs(0))
  coords = positional.Coordinates(jnp.zeros((1, 4), jnp.int32), features=jnp.zeros((1, 4, 8)))
  bias, scale = positional.attention_terms(encoding, coords, coords)
  per_call = ["transform_qk"] if positional.get(pe).transform_per_call else []  # xPos: its state holds keys transformed
  return per_call + [hook for hook, terms in (("logit_bias", bias), ("prob_scale", scale)) if terms not in ((), None)]


# By default: linear attention's refusal of every representative encoding that it cannot serve (cheap), and a training
# step for a few that build, covering both attentions and both families; the slow suite trains the whole registry.
TRAINED_BY_DEFAULT = {("rope", "xla", "decoder"), ("urpe", "xla", "encoder"), ("rope", "linear", "decoder"),
                      ("learned", "linear", "encoder")}


def every_encoding_case(pe: str, impl: str, family: str):
  refused = impl == "linear" and bool(hooks_linear_attention_cannot_apply(pe))
  default = (pe, impl, family) in TRAINED_BY_DEFAULT or (refused and pe in REPRESENTATIVE_ENCODINGS)
  return pytest.param(pe, impl, family, id=f"{pe}-{impl}-{family}", marks=() if default else pytest.mark.slow)


@pytest.mark.parametrize("pe,impl,family", [every_encoding_case(pe, impl, family) for pe in positional.available()
                                            for impl in ("xla", "linear") for family in ("encoder", "decoder")])
def test_every_encoding_with_every_attention_builds_trains_and_generates(pe, impl, family):
  """Discovered from the registry: a new encoding either works with both attentions in both families, or linear
  attention refuses it at build time with an error that names the encoding, the hook and the usable encodings (and
  a bidirectional encoder one that is defined for causal attention only)."""
  if family == "encoder" and positional.get(pe).causal_only:
    with pytest.raises(ValueError, match=f"positional encoding '{pe}' is defined for causal attention only"):
      tiny_model(family, pe, attention=dict(impl=impl), **per_token_options(family))
    return
  unusable = hooks_linear_attention_cannot_apply(pe) if impl == "linear" else []
  if unusable:
    works = [n for n in positional.available() if not hooks_linear_attention_cannot_apply(n)]
    message = (re.escape(f"positional encoding '{pe}' uses the {' and '.join(unusable)} hook, which "
                         f"attention.impl='linear' cannot apply (") + ".*" +  # what it cannot: a term, a transform
               re.escape(f" for it, or positional.name one that attention.impl='linear' serves: {', '.join(works)}"))
    with pytest.raises(ValueError, match=message):
      tiny_model(family, pe, attention=dict(impl=impl), **per_token_options(family))
    return
  model = tiny_model(family, pe, attention=dict(impl=impl), num_layers=1, **per_token_options(family))
  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
  tokens = random_tokens(10, (2, 8))
  before = jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))

  @nnx.jit
  def train_step(model, optimizer):
    loss_fn = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(tokens), tokens % 5).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  assert np.isfinite(float(train_step(model, optimizer)))
  after = jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))
  assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(before, after))
  if family == "decoder":
    generated = models.generate(model, tokens[:, :4], max_new_tokens=2, rng=jax.random.key(0))
    assert generated.shape == (2, 2) and np.all((np.asarray(generated) >= 0) & (np.asarray(generated) < 32))


@pytest.mark.slow  # ≈ 1 min each on 2 busy cores; test_cached_decoding_equals_full_forward covers the cache by default
@pytest.mark.parametrize("pe,feature_map", [("spe_sine", "favor"), ("spe_conv", "relu")])
def test_linear_attention_generation_with_ragged_prompts_equals_full_recompute(pe, feature_map):
  model = tiny_model("decoder", pe, attention=dict(impl="linear", core=dict(feature_map=feature_map)))
  model.eval()  # the features and the SPE noise of the full recompute are the ones generation uses
  prompts = random_tokens(7, (2, 6))
  lengths = jnp.array([6, 3])
  generated = models.generate(model, prompts, prompt_lengths=lengths, max_new_tokens=4, rng=jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(generated[:1]), np.asarray(greedy_by_full_forward(model, prompts[:1], 4)))
  np.testing.assert_array_equal(np.asarray(generated[1:]),
                                np.asarray(greedy_by_full_forward(model, prompts[1:, :3], 4)))


def test_random_features_and_spe_noise_are_redrawn_while_training_and_fixed_in_eval():
  model = tiny_model("decoder", "spe_sine", attention=dict(impl="linear"))
  tokens = random_tokens(11, (2, 8))
  assert not np.allclose(np.asarray(forward(model, tokens, None, None)), np.asarray(forward(model, tokens, None, None)))
  model.eval()
  np.testing.assert_array_equal(np.asarray(forward(model, tokens, None, None)),
                                np.asarray(forward(model, tokens, None, None)))


def test_linear_decoding_state_does_not_grow_with_the_prefix():
  model = tiny_model("decoder", "rope", attention=dict(impl="linear", core=dict(num_features=24)))
  cache = model.init_cache(2, 40)
  state = cache.layers[0]
  heads = TINY["attention"]["num_heads"]
  assert state.kv.shape == (2, heads, 24, TINY["d_model"] // heads)
  assert state.k_sum.shape == (2, heads, 24)


@pytest.mark.parametrize("impl,pe", [pytest.param("xla", "rope", marks=pytest.mark.slow),  # test_grouped_query: every
                                     pytest.param("chunked", "alibi", marks=pytest.mark.slow),  # core's grouped reading
                                     pytest.param("pallas", "rope", marks=pytest.mark.slow),
                                     pytest.param("linear", "rope", marks=pytest.mark.slow), ("xla", "spe_sine")])
def test_grouped_query_cache_holds_the_kv_heads_and_decodes_like_the_full_forward(impl, pe):
  """The cache of a num_kv_heads < num_heads decoder keeps kv heads only (the core maps each query head to its kv
  head): the KV cache's keys and values, linear attention's recurrent state; an encoding with per-head key transforms
  (SPE) keeps a key per query head. Either way, a prefill and single-token steps give the full forward's logits."""
  model = tiny_model("decoder", pe, attention=dict(impl=impl, num_kv_heads=1))
  model.eval()
  tokens = random_tokens(4, (2, 9))
  cache = model.init_cache(2, 12)
  layer = cache.layers[0]
  heads = TINY["attention"]["num_heads"]
  head_dim = TINY["d_model"] // heads
  key_heads = heads if pe == "spe_sine" else 1
  if impl == "linear":
    assert layer.kv.shape[:2] == layer.k_sum.shape[:2] == layer.shift.shape == (2, key_heads)
    assert layer.kv.shape[3] == head_dim
  else:
    assert layer.k.shape[:3] == (2, 12, key_heads) and layer.v.shape[:3] == (2, 12, key_heads)
    assert layer.v.shape[3] == head_dim
  pieces = []
  for start, stop in [(0, 4)] + [(t, t + 1) for t in range(4, 9)]:
    logits, cache = extend(model, tokens[:, start:stop], cache)
    pieces.append(logits)
  full = forward(model, tokens, None, None)
  np.testing.assert_allclose(np.asarray(jnp.concatenate(pieces, axis=1)), np.asarray(full), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", models.available())
def test_each_family_declares_the_batch_fields_it_takes_and_the_step_passes_only_those(family):
  """The training step knows no family's inputs by name: it passes a batch's fields that the family declares
  (`batch_fields`, each a keyword of the model's call) and leaves the others (here another family's) out."""
  cls = models.get(family)
  keywords = {name for name, p in inspect.signature(cls.__call__).parameters.items() if p.kind is p.KEYWORD_ONLY}
  assert cls.batch_fields and set(cls.batch_fields) <= keywords
  if family == "decoder":
    model = tiny_model("decoder", "rope")
    tokens = random_tokens(0, (2, 6))
    batch = {"inputs": tokens, "mask": jnp.ones((2, 6), bool).at[1, 4:].set(False),
             "spd": jnp.zeros((2, 6, 6), jnp.int32)}  # a graph family's field: not the decoder's
    np.testing.assert_array_equal(np.asarray(step.model_outputs(model, batch)),
                                  np.asarray(model(tokens, mask=batch["mask"])))
