"""Properties every registered encoding must have, discovered from the registry: registering an encoding adds it
to every test here, in both families."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import extend, forward, per_token_options, random_tokens, tiny_model
from zoo import positional
from zoo.attention import AlibiBias, RelativeTable

ENCODINGS = positional.available()
# Stochastic encodings (SPE) are relative in expectation over their noise; for a fixed noise key they are
# deterministic functions, which is what the other properties check (in eval mode, where the key is fixed).
STOCHASTIC = [n for n in ENCODINGS if getattr(positional.get(n), "stochastic", False)]
RELATIVE = [n for n in ENCODINGS if positional.get(n).relative and n not in STOCHASTIC]
ABSOLUTE = [n for n in ENCODINGS if not positional.get(n).relative]
# Encodings without logit_bias / prob_scale: the ones linear attention can serve.
LINEAR_ENCODINGS = [n for n in ENCODINGS if not any(positional.implements(positional.get(n), h)
                                                    for h in ("logit_bias", "prob_scale"))]
FAMILIES = ["encoder", "decoder"]
LENGTH = 12


def perturbed(model, seed=1, scale=0.5):
  """The model with every positional parameter moved off its initial value (so C ≠ 1, biases are not tiny)."""
  state = nnx.state(model, nnx.Param)
  keys = iter(jax.random.split(jax.random.key(seed), 1000))
  def move(path, x):
    on_positional = any(getattr(p, "key", p) == "positional" for p in path)
    return x + scale * jax.random.normal(next(keys), x.shape) if on_positional else x
  nnx.update(model, jax.tree_util.tree_map_with_path(move, state))
  return model


def token_model(family, pe, **kw):
  model = perturbed(tiny_model(family, pe, **per_token_options(family), **kw))
  if pe in STOCHASTIC:
    model.eval()  # a fixed noise key: the model is then a deterministic function
  return model


def test_registry_lists_the_built_in_encodings():
  assert set(ENCODINGS) >= {"none", "sinusoidal", "learned", "rope", "alibi", "t5_bias", "rpe", "urpe", "spe_sine",
                            "spe_conv"}
  assert set(RELATIVE) >= {"rope", "alibi", "t5_bias", "rpe", "urpe"}
  assert set(STOCHASTIC) >= {"spe_sine", "spe_conv"}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pe", RELATIVE)
def test_relative_encodings_are_invariant_to_shifting_all_positions(family, pe):
  model = token_model(family, pe)
  tokens = random_tokens(0, (2, LENGTH))
  positions = jnp.tile(jnp.arange(LENGTH), (2, 1))
  base = forward(model, tokens, positions, None)
  shifted = forward(model, tokens, positions + 9, None)
  np.testing.assert_allclose(np.asarray(shifted), np.asarray(base), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pe", [n for n in STOCHASTIC if positional.get(n).relative])
def test_stochastic_relative_encodings_are_shift_invariant_in_expectation(family, pe):
  """E_noise[q̂(m)·k̂(n)] depends on m − n only: the mean over 64 independent draws at positions shifted by 9 agrees
  with the unshifted one within 5 standard errors, entry by entry."""
  encoding = token_model(family, pe).backbone.positional
  q, k = (jax.random.normal(key, (1, LENGTH, encoding.dims.num_heads, encoding.dims.head_dim))
          for key in jax.random.split(jax.random.key(4)))
  positions = jnp.arange(LENGTH)[None]

  @jax.jit
  def logits(keys, shift):  # [draws, heads, LENGTH, LENGTH]
    def one(key):
      q_hat, k_hat = encoding.transform_qk_with_key(q, k, positions + shift, positions + shift, key)
      return jnp.einsum("bqhr,bkhr->bhqk", q_hat, k_hat)[0]
    return jax.vmap(one)(keys)

  draws = 64
  base, shifted = (np.asarray(logits(jax.random.split(jax.random.key(seed), draws), shift))
                   for seed, shift in ((0, 0), (1, 9)))
  stderr = np.sqrt((base.var(0) + shifted.var(0)) / draws)
  assert np.all(np.abs(base.mean(0) - shifted.mean(0)) < 5 * stderr + 1e-6)


@pytest.mark.parametrize("pe", ABSOLUTE)
def test_absolute_encodings_do_see_the_shift(pe):
  model = token_model("encoder", pe)
  tokens = random_tokens(0, (2, LENGTH))
  positions = jnp.tile(jnp.arange(LENGTH), (2, 1))
  assert not np.allclose(np.asarray(forward(model, tokens, positions, None)),
                         np.asarray(forward(model, tokens, positions + 9, None)), atol=1e-4)


@pytest.mark.parametrize("pe", ENCODINGS)
def test_decoder_output_at_t_ignores_later_tokens(pe):
  model = token_model("decoder", pe)
  tokens = random_tokens(0, (2, LENGTH))
  changed = tokens.at[:, 7:].set((tokens[:, 7:] + 1) % 32)
  a, b = forward(model, tokens, None, None), forward(model, changed, None, None)
  np.testing.assert_allclose(np.asarray(a[:, :7]), np.asarray(b[:, :7]), rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.asarray(a[:, 7:]), np.asarray(b[:, 7:]))


@pytest.mark.parametrize("pe,impl", [(n, "xla") for n in ENCODINGS] + [(n, "linear") for n in LINEAR_ENCODINGS])
def test_cached_decoding_equals_full_forward(pe, impl):
  model = token_model("decoder", pe, attention_impl=impl)
  if impl == "linear":
    model.eval()  # the same random features in the full forward and at every decoding step
  tokens = random_tokens(1, (2, LENGTH))
  full = forward(model, tokens, None, None)
  cache = model.init_cache(2, 16)
  pieces = []
  prefill, cache = extend(model, tokens[:, :5], cache)  # a 5-token prompt, then single-token steps
  pieces.append(prefill)
  for t in range(5, LENGTH):
    step, cache = extend(model, tokens[:, t:t + 1], cache)
    pieces.append(step)
  np.testing.assert_allclose(np.asarray(jnp.concatenate(pieces, axis=1)), np.asarray(full), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(cache.index), [LENGTH, LENGTH])


def reference_index(index_fn, lag, t5_table):
  """Independent lag -> row maps: numpy clipping, or the bucket lists of Hugging Face T5 (fixture)."""
  if index_fn.kind == "clip":
    return np.clip(lag, -index_fn.max_distance, index_fn.max_distance) + index_fn.max_distance
  key = (index_fn.bidirectional, index_fn.num_buckets, index_fn.max_distance)
  return np.vectorize(t5_table[key].__getitem__)(lag)


def closed_form(term, t5_table, alibi_slopes):
  """Evaluates a structured term element by element with numpy: [batch, heads, q_len, k_len]."""
  q_pos, k_pos = np.asarray(term.q_pos), np.asarray(term.k_pos)
  lag = k_pos[:, None, :] - q_pos[:, :, None]
  if isinstance(term, RelativeTable):
    rows = reference_index(term.index_fn, lag, t5_table)
    return np.asarray(term.table)[:, rows].transpose(1, 0, 2, 3)
  if isinstance(term, AlibiBias):
    slopes = np.asarray(alibi_slopes[str(len(term.slopes))])
    return -slopes[None, :, None, None] * np.abs(lag)[:, None]
  raise AssertionError(f"no closed form for {type(term).__name__}: add one to this test")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pe", [n for n in ENCODINGS if {"logit_bias", "prob_scale"} & set(dir(positional.get(n)))])
def test_dense_expansion_equals_closed_form(reference_numbers, family, pe):
  t5_table = {(c["bidirectional"], c["num_buckets"], c["max_distance"]): dict(zip(c["relative_position"], c["bucket"]))
              for c in reference_numbers["t5_bucket"]}
  encoding = token_model(family, pe).backbone.positional
  rng = np.random.default_rng(0)
  q_pos = jnp.asarray(rng.integers(0, 250, size=(2, 6)))
  k_pos = jnp.asarray(rng.integers(0, 250, size=(2, 9)))
  for hook in ("logit_bias", "prob_scale"):
    if positional.implements(encoding, hook):
      term = getattr(encoding, hook)(q_pos, k_pos)
      np.testing.assert_allclose(np.asarray(term.dense()), closed_form(term, t5_table, reference_numbers["alibi"]["slopes"]),
                                 rtol=1e-6, atol=1e-6, err_msg=f"{pe}.{hook}")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pe", ENCODINGS)
def test_forward_and_gradients_are_finite(family, pe):
  model = token_model(family, pe)
  tokens = random_tokens(2, (2, LENGTH))
  mask = jnp.arange(LENGTH)[None] < jnp.array([[LENGTH], [8]])  # the second sequence is padded

  @nnx.jit
  def loss_and_grads(model):
    def loss_fn(model):
      logits = model(tokens, mask=mask)
      return optax.softmax_cross_entropy_with_integer_labels(logits, tokens % logits.shape[-1]).mean()
    return nnx.value_and_grad(loss_fn)(model)

  loss, grads = loss_and_grads(model)
  assert np.isfinite(float(loss))
  leaves = jax.tree_util.tree_leaves_with_path(grads)
  for path, g in leaves:
    assert np.all(np.isfinite(np.asarray(g))), jax.tree_util.keystr(path)
  positional_grads = [g for path, g in leaves if "positional" in jax.tree_util.keystr(path)]
  assert all(np.any(np.asarray(g) != 0) for g in positional_grads), f"{pe}: a positional parameter gets no gradient"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bias", ["rpe", "t5_bias"])
def test_urpe_with_c_equal_one_is_its_rpe(family, bias):
  urpe = tiny_model(family, "urpe", pe_options={"bias": bias}, **per_token_options(family))  # C starts at ones
  rpe = tiny_model(family, bias, seed=7, **per_token_options(family))
  # Every URPE parameter but C goes to the same place in the RPE model (URPE's B sits one level deeper, under "b").
  urpe_params = {tuple(p for p in path if p != "b"): v
                 for path, v in nnx.to_flat_state(nnx.state(urpe, nnx.Param)) if path[-1] != "c"}
  copied = [(path, urpe_params[tuple(path)]) for path, _ in nnx.to_flat_state(nnx.state(rpe, nnx.Param))]
  assert len(copied) == len(urpe_params), "the two models should have the same parameters apart from C"
  nnx.update(rpe, nnx.from_flat_state(copied))
  tokens = random_tokens(3, (2, LENGTH))
  np.testing.assert_allclose(np.asarray(forward(urpe, tokens, None, None)), np.asarray(forward(rpe, tokens, None, None)),
                             rtol=1e-5, atol=1e-5)
  # ... and a C that is not one changes the output.
  urpe.backbone.positional.c[...] = urpe.backbone.positional.c[...] * 0.5
  assert not np.allclose(np.asarray(forward(urpe, tokens, None, None)), np.asarray(forward(rpe, tokens, None, None)),
                         atol=1e-4)


@pytest.mark.parametrize("pe", ["urpe", "rpe", "t5_bias", "spe_sine", "spe_conv"])
def test_sharing_across_layers_controls_the_parameter_count(pe):
  def count(share):
    model = tiny_model("decoder", pe, num_layers=3, pe_options=dict(share_across_layers=share))
    return sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
  shared, per_layer = count(True), count(False)
  assert per_layer > shared
  per_encoding = sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(
      tiny_model("decoder", pe).backbone.positional, nnx.Param)))
  assert per_layer - shared == 2 * per_encoding, pe
