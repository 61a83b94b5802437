"""Properties every registered encoding must have, discovered from the registry: registering an encoding adds it
to every test here, in both families. The default suite runs the registry matrices (shifts, causality, cached
decoding, gradients) for the representative encodings, one per term type, and the slow suite for every encoding (see
conftest.REPRESENTATIVE_ENCODINGS); each encoding's terms against their independent reference run by default."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import (REPRESENTATIVE_ENCODINGS, default_or_slow, extend, forward, per_token_options, random_tokens,
                      representative_or_slow, tiny_model)
from zoo import attention, positional
from zoo.attention import Tile
from zoo.positional import Coordinates

ENCODINGS = positional.available()
# Stochastic encodings (SPE) are relative in expectation over their noise; for a fixed noise key they are
# deterministic functions, which is what the other properties check (in eval mode, where the key is fixed).
STOCHASTIC = [n for n in ENCODINGS if getattr(positional.get(n), "stochastic", False)]
RELATIVE = [n for n in ENCODINGS if positional.get(n).relative and n not in STOCHASTIC]
ABSOLUTE = [n for n in ENCODINGS if not positional.get(n).relative]
# Encodings without logit_bias / prob_scale or a per-call transform (xPos): the ones linear attention can serve.
LINEAR_ENCODINGS = [n for n in ENCODINGS if not positional.get(n).transform_per_call and not any(
    positional.implements(positional.get(n), h) for h in ("logit_bias", "prob_scale"))]
FAMILIES = ["encoder", "decoder"]
LENGTH = 12


def in_family(family, pe):
  """Whether `family`'s models take encoding `pe` (the encoder here is bidirectional: no causal-only encoding)."""
  return family == "decoder" or not positional.get(pe).causal_only


def input_features(encoding, length, seed=5):
  """Attention input for encodings whose terms read the tokens (FoX): [2, length, d_model]."""
  return jnp.asarray(np.random.default_rng(seed).normal(size=(2, length, encoding.dims.d_model)), jnp.float32)


def perturbed(model, seed=1, scale=0.5):
  """The model with every positional parameter (shared, or per layer) moved off its initial value (so C ≠ 1, biases
  are not tiny), by `scale` times its root mean square clipped to [0.1, 1]. Clipped, because convSPE's filters start
  at rms 0.07: 0.5 more would make them 7 times that and the linear core's logits ~50 times, past what FAVOR+'s
  exponentials hold in float32 with unscaled logits (cached decoding then differed from the full forward by underflow
  alone)."""
  state = nnx.state(model, nnx.Param)
  keys = iter(jax.random.split(jax.random.key(seed), 1000))
  def move(path, x):
    on_positional = any(getattr(p, "key", p) in ("positional", "encoding") for p in path)
    size = jnp.clip(jnp.sqrt(jnp.mean(jnp.square(x))), 0.1, 1.0)
    return x + scale * size * jax.random.normal(next(keys), x.shape) if on_positional else x
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


@pytest.mark.parametrize("family,pe", [representative_or_slow(pe, family, pe) for family in FAMILIES
                                       for pe in RELATIVE if in_family(family, pe)])
def test_relative_encodings_are_invariant_to_shifting_all_positions(family, pe):
  model = token_model(family, pe)
  tokens = random_tokens(0, (2, LENGTH))
  positions = jnp.tile(jnp.arange(LENGTH), (2, 1))
  base = forward(model, tokens, positions, None)
  shifted = forward(model, tokens, positions + 9, None)
  np.testing.assert_allclose(np.asarray(shifted), np.asarray(base), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pe", default_or_slow([n for n in STOCHASTIC if positional.get(n).relative],
                                               ("spe_sine",)))
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


@pytest.mark.parametrize("pe", [representative_or_slow(pe) for pe in ABSOLUTE])
def test_absolute_encodings_do_see_the_shift(pe):
  """Shifted as far as the encoding allows (a learned table's size; else by 2000, past FIRE's threshold, below which
  it is a function of the lag alone)."""
  model = token_model("encoder", pe)
  limit = model.backbone.positional.max_positions
  shift = 2000 if limit is None else limit - LENGTH
  tokens = random_tokens(0, (2, LENGTH))
  positions = jnp.tile(jnp.arange(LENGTH), (2, 1))
  assert not np.allclose(np.asarray(forward(model, tokens, positions, None)),
                         np.asarray(forward(model, tokens, positions + shift, None)), atol=1e-4)


@pytest.mark.parametrize("pe", [representative_or_slow(pe) for pe in ENCODINGS])
def test_decoder_output_at_t_ignores_later_tokens(pe):
  model = token_model("decoder", pe)
  tokens = random_tokens(0, (2, LENGTH))
  changed = tokens.at[:, 7:].set((tokens[:, 7:] + 1) % 32)
  a, b = forward(model, tokens, None, None), forward(model, changed, None, None)
  np.testing.assert_allclose(np.asarray(a[:, :7]), np.asarray(b[:, :7]), rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.asarray(a[:, 7:]), np.asarray(b[:, 7:]))


# The options converted pretrained models bring (zoo.convert): grouped-query attention, biases everywhere, tanh-GELU,
# unscaled logits and embeddings, another norm epsilon. Every encoding and core must keep working with them.
def pretrained_style(impl: str = "xla") -> dict:
  return dict(attention=dict(impl=impl, num_kv_heads=1, qkv_bias=True, out_bias=True, scale_logits=False),
              mlp=dict(bias=True, activation="gelu_tanh"), norm=dict(eps=1e-5), scale_embeddings=False)


STYLES = {"zoo": lambda impl: dict(attention=dict(impl=impl)), "pretrained": pretrained_style}


def with_random_biases(model, seed=2):
  """The model with every bias moved off zero (they start at zero, which would hide a misplaced one)."""
  keys = iter(jax.random.split(jax.random.key(seed), 1000))
  def move(path, x):
    return x + 0.3 * jax.random.normal(next(keys), x.shape) if getattr(path[-1], "key", None) == "bias" else x
  nnx.update(model, jax.tree_util.tree_map_with_path(move, nnx.state(model, nnx.Param)))
  return model


DECODING_CASES = [(n, "xla") for n in ENCODINGS] + [(n, "linear") for n in LINEAR_ENCODINGS]


def decoding_case(pe: str, impl: str, style: str):
  """Default: the representative encodings through xla in the pretrained style (grouped queries: the cache holds kv
  heads), and RoPE through linear attention in it; every case in both styles in the slow suite."""
  representative = pe in REPRESENTATIVE_ENCODINGS if impl == "xla" else pe == "rope"
  default = style == "pretrained" and representative
  return pytest.param(pe, impl, style, marks=() if default else pytest.mark.slow)


@pytest.mark.parametrize("pe,impl,style", [decoding_case(pe, impl, style) for style in STYLES
                                           for pe, impl in DECODING_CASES])
def test_cached_decoding_equals_full_forward(pe, impl, style):
  model = with_random_biases(token_model("decoder", pe, **STYLES[style](impl)))
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
  # Linear attention's cache is a running sum of feature products that the full forward forms as prefix sums, in
  # another order: float32 rounding of FAVOR+'s exponential features reached 1.3e-5 (spe_sine, 1 of 768 outputs).
  tol = 5e-5 if impl == "linear" else 1e-5
  np.testing.assert_allclose(np.asarray(jnp.concatenate(pieces, axis=1)), np.asarray(full), rtol=tol, atol=tol)
  np.testing.assert_array_equal(np.asarray(cache.index), [LENGTH, LENGTH])


@pytest.mark.parametrize("pe", [representative_or_slow(pe) for pe in ENCODINGS])
def test_pretrained_style_decoder_is_the_same_model_through_every_core_that_serves_it(pe):
  """Grouped-query heads are repeated before the core, so every core serving the encoding's terms (chunked, the
  Pallas kernels in the interpreter) must give the reference's logits with them."""
  reference = with_random_biases(token_model("decoder", pe, **pretrained_style()))
  reference.eval()
  coords = Coordinates(jnp.zeros((1, LENGTH), jnp.int32),
                       features=input_features(reference.backbone.positional, LENGTH)[:1])
  bias, scale = positional.attention_terms(reference.backbone.positional, coords, coords)
  tokens = random_tokens(3, (2, LENGTH))
  expected = forward(reference, tokens, None, None)
  for impl in attention.cores_serving(bias, scale):
    if impl in ("xla", "linear"):
      continue
    model = tiny_model("decoder", pe, **per_token_options("decoder"), **pretrained_style(impl))
    model.eval()
    nnx.update(model, nnx.state(reference, nnx.Param))
    np.testing.assert_allclose(np.asarray(forward(model, tokens, None, None)), np.asarray(expected), rtol=1e-5,
                               atol=1e-5, err_msg=impl)


def numpy_table(table, rows):
  """table [heads, rows] read at rows [batch, q, k] -> [batch, heads, q, k]."""
  return np.asarray(table)[:, rows].transpose(1, 0, 2, 3)


def t5_rows(encoding, lag, fixtures):
  """Hugging Face T5's buckets (fixture) for the encoding's T5 options."""
  index = encoding.index
  table = fixtures["t5"][(index.bidirectional, index.num_buckets, index.max_distance)]
  return np.vectorize(table.__getitem__)(lag)


def clip_rows(max_distance, lag):
  return np.clip(lag, -max_distance, max_distance) + max_distance


# Independent references, per encoding: {hook: [batch, heads, q_len, k_len]} from numpy formulas, the papers'
# definitions and public libraries' numbers (fixtures). A new encoding with a bias or scale needs an entry.
REFERENCES = {
    "alibi": lambda enc, q, k, lag, fx: {"logit_bias": -np.asarray(fx["alibi"][str(enc.dims.num_heads)])[
        None, :, None, None] * np.abs(lag)[:, None]},
    "rpe": lambda enc, q, k, lag, fx: {"logit_bias": numpy_table(enc.table[...], clip_rows(enc.options.max_distance,
                                                                                           lag))},
    "t5_bias": lambda enc, q, k, lag, fx: {"logit_bias": numpy_table(enc.table[...], t5_rows(enc, lag, fx))},
    "urpe": lambda enc, q, k, lag, fx: {
        "logit_bias": REFERENCES[enc.options.bias](enc.b, q, k, lag, fx)["logit_bias"],
        "prob_scale": numpy_table(enc.c[...], (clip_rows(enc.b.options.max_distance, lag)
                                               if enc.options.bias == "rpe" else t5_rows(enc.b, lag, fx)))},
    "spd": lambda enc, q, k, lag, fx: {"logit_bias": numpy_table(enc.spatial[...], np.minimum(
        np.abs(lag), enc.options.max_distance))},
    "spd_urpe": lambda enc, q, k, lag, fx: {
        **REFERENCES["spd"](enc, q, k, lag, fx),
        "prob_scale": numpy_table(enc.c[...], np.minimum(np.abs(lag), enc.options.max_distance))},
    "kerple_log": lambda enc, q, k, lag, fx: {"logit_bias": kerple_reference(enc, lag, lambda r1, r2, d: -r1 * np.log(
        1 + r2 * d))},
    "kerple_power": lambda enc, q, k, lag, fx: {"logit_bias": kerple_reference(
        enc, lag, lambda r1, r2, d: -r1 * d ** r2, max_r2=2.0)},
    "sandwich": lambda enc, q, k, lag, fx: {"logit_bias": sandwich_reference(enc, q, k)},
    "fire": lambda enc, q, k, lag, fx: {"logit_bias": fire_reference(enc, q, lag)},
    "cope": lambda enc, q, k, lag, fx: {"logit_bias": cope_reference(enc, q, k, fx["content"])},
    "memory_rpe": lambda enc, q, k, lag, fx: {"logit_bias": memory_rpe_reference(enc, lag)},
    "rrwp": lambda enc, q, k, lag, fx: {"logit_bias": rrwp_reference(enc, lag)},
    # GraphGPS's node encodings hand on only the graph model's edge bias: no term on a sequence
    # (tests/test_graph_encodings.py checks their graph readings and their embeddings).
    "rwse": lambda enc, q, k, lag, fx: {},
    "lappe": lambda enc, q, k, lag, fx: {},
    "fox": lambda enc, q, k, lag, fx: {"logit_bias": fox_reference(enc, fx["features"], q.shape[1])},
}


def fox_reference(enc, features, q_len):
  """Lin et al. (2025): Σ_{l=j+1..i} log σ(w_h · x_l + b_h), by a loop, the queries being the first q_len of the
  keys' tokens (self-attention); for a key after its query (masked in a causal model) the same sum with a minus sign,
  −Σ_{l=i+1..j}, the difference of running sums the term is."""
  x = np.asarray(features, np.float64)  # [batch, k_len, d_model]
  log_f = -np.log1p(np.exp(-(x @ np.asarray(enc.gate[...], np.float64) + np.asarray(enc.gate_bias[...]))))
  batch, k_len, heads = log_f.shape
  out = np.zeros((batch, heads, q_len, k_len))
  for b, h, i, j in np.ndindex(batch, heads, q_len, k_len):
    out[b, h, i, j] = sum(log_f[b, j + 1:i + 1, h]) if j <= i else -sum(log_f[b, i + 1:j + 1, h])
  return out


def rrwp_reference(enc, lag):
  """Ma et al. (2023) on a sequence read as a path: Σ_k W[h, k] (M^k)_{c, c + lag}, k < K, M = D⁻¹A of a path of
  4K + 1 nodes seen from its centre c (whose walks never reach the ends), by matrix powers in numpy."""
  steps = enc.options.steps
  n, centre = 4 * steps + 1, 2 * steps
  a = np.eye(n, k=1) + np.eye(n, k=-1)
  m = a / a.sum(1, keepdims=True)
  walks = np.stack([np.linalg.matrix_power(m, k)[centre] for k in range(steps)], -1)  # [n, K]
  relation = walks[centre + np.clip(lag, -centre, centre)]  # [batch, q, k, K]
  return np.einsum("bqkn,hn->bhqk", relation, np.asarray(enc.weights[...])[:, :steps])


def cope_reference(enc, q_pos, k_pos, content):
  """Golovneva et al. (2024), by the definition, in loops: gates σ(q·k/√d) of the visible keys, the position of key j
  for query i is the sum of the gates of the keys whose positions lie between theirs, clipped to n − 1, and the bias
  interpolates q_i·e[p] between the neighbouring integers."""
  emb = np.asarray(enc.embeddings[...], np.float64)  # [n, head_dim]
  q = np.asarray(content.q, np.float64)  # [batch, tq, heads, head_dim]
  gates = np.where(np.asarray(content.allowed), 1 / (1 + np.exp(-np.asarray(content.logits, np.float64))), 0.0)
  batch, heads, tq, tk = gates.shape
  out = np.zeros(gates.shape)
  for b, h, i, j in np.ndindex(batch, heads, tq, tk):
    lo, hi = sorted((q_pos[b, i], k_pos[b, j]))
    p = min(sum(gates[b, h, i, m] for m in range(tk) if lo <= k_pos[b, m] <= hi), len(emb) - 1)
    z = emb @ q[b, i, h]  # [n]
    w = p - math.floor(p)
    out[b, h, i, j] = (1 - w) * z[math.floor(p)] + w * z[math.ceil(p)]
  return out


def random_content(encoding, q_pos, k_pos):
  """Queries and keys for an encoding's dims at these positions, their logits and a mask hiding some keys."""
  rng = np.random.default_rng(3)
  heads, head_dim = encoding.dims.num_heads, encoding.dims.head_dim
  q = rng.normal(size=(*q_pos.shape, heads, head_dim))
  k = rng.normal(size=(*k_pos.shape, heads, head_dim))
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
  allowed = rng.random((q_pos.shape[0], 1, q_pos.shape[1], k_pos.shape[1])) > 0.2
  return attention.Content(jnp.asarray(q, jnp.float32), jnp.asarray(logits, jnp.float32), jnp.asarray(allowed),
                           head_dim ** -0.5)


def kerple_reference(enc, lag, kernel, max_r2=np.inf):
  """Chi et al. (2022), eq. (6)-(7), with the authors' clamp of both parameters at 0.01 (and r2 <= 2 for power)."""
  params = np.asarray(enc.params[...], np.float64)
  r1, r2 = np.maximum(params[:, 0], 0.01), np.clip(params[:, 1], 0.01, max_r2)
  return kernel(r1[None, :, None, None], r2[None, :, None, None], np.abs(lag)[:, None].astype(np.float64))


def memory_rpe_reference(enc, lag):
  """Wang & E (2024): p · φ(|t − s|), φ(z) = −log z (z ≥ 1; z = 0 read as 1) or −z, p = exp of the stored log p."""
  p = np.exp(np.asarray(enc.log_p[...], np.float64))[None, :, None, None]
  z = np.abs(lag)[:, None].astype(np.float64)
  return p * (-np.log(np.maximum(z, 1)) if enc.options.phi == "log" else -z)


def sandwich_reference(enc, q_pos, k_pos):
  """(p(q) · p(k) − d̄/2) / r_h, r_h = 8h/H, with p the sinusoidal embedding of Vaswani et al., in numpy — the
  compression ratio dividing the whole bias, as NeMo's SandwichRelativePositionEmbedding."""
  dim, heads = enc.options.dim, enc.dims.num_heads
  freqs = 10000.0 ** (-np.arange(0, dim, 2) / dim)

  def embedding(pos):  # [batch, n] -> [batch, n, dim]
    angles = pos[..., None] * freqs
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)

  dot = np.einsum("bid,bjd->bij", embedding(q_pos), embedding(k_pos)) - dim / 2
  return np.stack([dot / (8 * h / heads) for h in range(1, heads + 1)], axis=1)


def fire_reference(enc, q_pos, lag):
  """Li et al. (2024), eq. (3) as their appendix code: f(ψ(|lag|) / (ψ(max(q, L)) + 1e-6)), ψ(x) = log(c·x + 1), f a
  ReLU MLP, in numpy."""
  c = np.log1p(np.exp(float(enc.c[...])))  # softplus
  threshold = abs(float(enc.threshold_scale[...])) * enc.options.threshold
  psi = lambda x: np.log(c * x + 1.0)
  x = psi(np.abs(lag)) / (psi(np.maximum(q_pos, threshold))[:, :, None] + 1e-6)  # [batch, q, k]
  hidden = np.maximum(x[..., None] * np.asarray(enc.w1[...]) + np.asarray(enc.b1[...]), 0.0)  # [batch, q, k, hidden]
  return np.einsum("bqku,uh->bhqk", hidden, np.asarray(enc.w2[...])) + np.asarray(enc.b2[...])[None, :, None, None]


@pytest.fixture(scope="module")
def fixtures(reference_numbers):
  t5 = {(c["bidirectional"], c["num_buckets"], c["max_distance"]): dict(zip(c["relative_position"], c["bucket"]))
        for c in reference_numbers["t5_bucket"]}
  return {"t5": t5,
          "alibi": reference_numbers["alibi"]["slopes"]}


@pytest.mark.parametrize("family,pe", [(family, n) for family in FAMILIES for n in ENCODINGS
                                       if {"logit_bias", "prob_scale"} & set(dir(positional.get(n)))
                                       and in_family(family, n)])
@pytest.mark.parametrize("offset", [0, 1000], ids=["random", "offset"])
def test_terms_equal_an_independent_reference(fixtures, family, pe, offset):
  assert pe in REFERENCES, f"{pe}: add an independent reference to REFERENCES"
  encoding = token_model(family, pe).backbone.positional
  rng = np.random.default_rng(0)
  q_pos = rng.integers(0, 250, size=(2, 6)) + offset
  # Keys in increasing positions, as along every sequence (a content term counts the keys between two positions).
  k_pos = np.sort(np.stack([rng.choice(250, 9, replace=False) for _ in range(2)]), axis=-1) + offset
  lag = k_pos[:, None, :] - q_pos[:, :, None]
  content = random_content(encoding, q_pos, k_pos)
  features = input_features(encoding, k_pos.shape[1])  # the keys' tokens; the queries are the first 6 of them
  expected = REFERENCES[pe](encoding, q_pos, k_pos, lag, {**fixtures, "content": content, "features": features})
  tile = Tile.whole(jnp.asarray(q_pos), jnp.asarray(k_pos))
  bias, scale = positional.attention_terms(encoding, Coordinates(jnp.asarray(q_pos), features=features[:, :6]),
                                           Coordinates(jnp.asarray(k_pos), features=features))
  got = {"logit_bias": attention.dense_sum(bias, tile, content) if bias else None,
         "prob_scale": None if scale is None else scale.values(tile)}
  assert {h for h, v in got.items() if v is not None} == set(expected)
  for hook, want in expected.items():
    np.testing.assert_allclose(np.asarray(got[hook]), want, rtol=1e-5, atol=1e-5, err_msg=f"{pe}.{hook}")


# Default: the representatives in the encoder, RoPE in the decoder too (whose every representative's forward the
# cached-decoding test above runs); every family and encoding in the slow suite.
@pytest.mark.parametrize("family,pe", [
    pytest.param(family, pe, marks=() if pe in REPRESENTATIVE_ENCODINGS and (family == "encoder" or pe == "rope")
                 else pytest.mark.slow) for family in FAMILIES for pe in ENCODINGS if in_family(family, pe)])
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
  positional_grads = [g for path, g in leaves if any(f"['{key}']" in jax.tree_util.keystr(path)
                                                     for key in ("positional", "encoding"))]
  assert all(np.any(np.asarray(g) != 0) for g in positional_grads), f"{pe}: a positional parameter gets no gradient"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bias", ["rpe", "t5_bias"])
def test_urpe_with_c_equal_one_is_its_rpe(family, bias):
  # C starts at ones.
  urpe = tiny_model(family, "urpe", positional=dict(options={"bias": bias}), **per_token_options(family))
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
    model = tiny_model("decoder", pe, num_layers=3, positional=dict(options=dict(share_across_layers=share)))
    return sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
  shared, per_layer = count(True), count(False)
  assert per_layer > shared
  per_encoding = sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(
      tiny_model("decoder", pe).backbone.positional, nnx.Param)))
  assert per_layer - shared == 2 * per_encoding, pe
