"""Each encoding's pure function against an independent reference: a public library's numbers or the paper's
formula."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import forward, random_tokens, tiny_model
from zoo import attention, positional
from zoo.attention import AttentionMask, Tile
from zoo.nn.attention import transform_at
from zoo.positional.alibi import alibi_bias


def test_t5_bucket_matches_hugging_face_t5(reference_numbers):
  for case in reference_numbers["t5_bucket"]:
    ours = positional.t5_bucket(jnp.asarray(case["relative_position"]), bidirectional=case["bidirectional"],
                                num_buckets=case["num_buckets"], max_distance=case["max_distance"])
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(case["bucket"]), err_msg=str(
        {k: case[k] for k in ("bidirectional", "num_buckets", "max_distance")}))


def test_alibi_slopes_match_x_transformers(reference_numbers):
  slopes = reference_numbers["alibi"]["slopes"]
  assert {"6", "12", "24", "48"} <= set(slopes)  # head counts that are not powers of two are covered
  for heads, expected in slopes.items():
    np.testing.assert_allclose(positional.alibi_slopes(int(heads)), expected, rtol=1e-6)


def test_alibi_bias_matrix_matches_x_transformers(reference_numbers):
  ref = reference_numbers["alibi"]
  heads, length = ref["dense_heads"], ref["dense_length"]
  positions = jnp.arange(length)[None]
  ours = alibi_bias(positional.alibi_slopes(heads)).values(Tile.whole(positions, positions))
  np.testing.assert_allclose(np.asarray(ours[0]), np.asarray(ref["dense"]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("positions_kind", ["arange", "offset", "explicit"])
def test_rope_matches_hugging_face_llama_and_gptj(reference_numbers, positions_kind):
  case = next(c for c in reference_numbers["rope"] if c["positions_kind"] == positions_kind)
  x, positions = jnp.asarray(case["x"]), jnp.asarray(case["positions"])
  for ref in case["outputs"]:
    ours = positional.apply_rope(x, positions, base=ref["base"], fraction=ref["fraction"],
                                 interleaved=ref["interleaved"])
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref["out"]), rtol=1e-5, atol=2e-5, err_msg=ref["source"])


def test_rope_scores_depend_only_on_position_difference():
  rng = np.random.default_rng(0)
  q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32) for _ in range(2))
  def score(q_pos, k_pos):
    return float(jnp.sum(positional.apply_rope(q, jnp.array([[q_pos]])) * positional.apply_rope(k, jnp.array([[k_pos]]))))
  assert score(3, 10) == pytest.approx(score(103, 110), abs=1e-4)
  assert score(3, 10) != pytest.approx(score(3, 11), abs=1e-4)


def test_sinusoidal_matches_vaswani_formula():
  dim, positions = 12, np.array([0, 1, 5, 77, 1000])
  expected = np.zeros((len(positions), dim))
  for row, pos in enumerate(positions):
    for i in range(dim // 2):
      expected[row, 2 * i] = math.sin(pos / 10000 ** (2 * i / dim))
      expected[row, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / dim))
  np.testing.assert_allclose(np.asarray(positional.sinusoidal(jnp.asarray(positions), dim)), expected, atol=2e-4)


def numpy_rope(x, positions, inv_freq):
  """Rotate-half RoPE in numpy: x [batch, length, heads, dim], pair i = features (i, i + dim/2) turned by
  position · inv_freq[i]."""
  half = x.shape[-1] // 2
  angles = positions[..., None, None] * inv_freq  # [batch, length, 1, half]
  first, second = x[..., :half], x[..., half:]
  return np.concatenate([first * np.cos(angles) - second * np.sin(angles),
                         second * np.cos(angles) + first * np.sin(angles)], axis=-1)


def yarn_frequencies(dim, base, factor, original_length, alpha=1.0, beta=32.0):
  """Peng et al. (2023), eq. (17)-(19): r(d) = L / λ_d, ramp γ(r), h(θ_d) = (1 − γ) θ_d / s + γ θ_d."""
  theta = base ** (-np.arange(0, dim, 2) / dim)
  ratio = original_length / (2 * np.pi / theta)
  gamma = np.clip((ratio - alpha) / (beta - alpha), 0, 1)
  return (1 - gamma) * theta / factor + gamma * theta


def llama3_frequencies(dim, base, factor, original_length, low=1.0, high=4.0):
  """Meta's Llama 3.1 `apply_scaling`, per frequency: keep short wavelengths, divide long ones by the factor, blend in
  between with smooth = (L / wavelength − low) / (high − low)."""
  out = []
  for freq in base ** (-np.arange(0, dim, 2) / dim):
    wavelength = 2 * math.pi / freq
    if wavelength < original_length / high:
      out.append(freq)
    elif wavelength > original_length / low:
      out.append(freq / factor)
    else:
      smooth = (original_length / wavelength - low) / (high - low)
      out.append((1 - smooth) * freq / factor + smooth * freq)
  return np.asarray(out)


def rope_encoding(name, head_dim, options):
  with nnx.use_eager_sharding(False):
    return positional.build(name, options, positional.ModelDims(2, head_dim, 2 * head_dim, 64, True),
                            rngs=nnx.Rngs(0))


@pytest.mark.parametrize("scaling", ["linear", "ntk", "yarn", "llama3", "dynamic"])
@pytest.mark.parametrize("positions_kind", ["random", "offset"])
def test_rope_scaling_matches_the_papers_formulas(scaling, positions_kind):
  dim, factor, base, original = 16, 4.0, 10000.0, 32
  rng = np.random.default_rng(0)
  q, k = (rng.normal(size=(2, 7, 2, dim)) for _ in range(2))
  positions = np.sort(rng.integers(0, 200, (2, 7)), axis=1) + (1000 if positions_kind == "offset" else 0)
  theta = base ** (-np.arange(0, dim, 2) / dim)
  inv_freq, temperature = {
      "linear": (theta / factor, 1.0),  # Chen et al. (2023): positions m → m / s
      "ntk": ((base * factor ** (dim / (dim - 2))) ** (-np.arange(0, dim, 2) / dim), 1.0),  # bloc97: base · s^(d/(d−2))
      "yarn": (yarn_frequencies(dim, base, factor, original), 0.1 * np.log(factor) + 1),  # √(1/t) = 0.1 ln s + 1
      "llama3": (llama3_frequencies(dim, base, factor, original), 1.0),
      # emozilla's dynamic NTK: the NTK base for the length the call reaches, S = max position + 1
      "dynamic": ((base * (factor * (positions.max() + 1) / original - factor + 1) ** (dim / (dim - 2))) ** (
          -np.arange(0, dim, 2) / dim), 1.0),
  }[scaling]
  encoding = rope_encoding("rope", dim, {"scaling": scaling, "factor": factor, "original_length": original})
  coords = positional.Coordinates(jnp.asarray(positions))
  ours = encoding.transform_qk(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), coords, coords)
  for got, x in zip(ours, (q, k)):
    # float32 angles of positions ~1000: ≈ 1e-4 rad of rounding
    np.testing.assert_allclose(np.asarray(got), numpy_rope(x, positions, inv_freq) * temperature, rtol=1e-4,
                               atol=5e-4)


def test_rope_scaling_factor_one_is_plain_rope():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(1, 5, 2, 8)), jnp.float32)
  coords = positional.Coordinates(jnp.arange(5)[None] * 37)
  plain = rope_encoding("rope", 8, None).transform_qk(x, x, coords, coords)[0]
  for scaling in ("linear", "ntk", "yarn"):
    scaled = rope_encoding("rope", 8, {"scaling": scaling}).transform_qk(x, x, coords, coords)[0]
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(plain), rtol=1e-5, atol=1e-5, err_msg=scaling)


@pytest.mark.parametrize("longest", [16, 17, 40])  # at, just past and far past the original context of 16
def test_longrope_matches_phi3s_formula(longest):
  """LongRoPE as Phi-3 computes it (Ding et al. 2024; Hugging Face's `_compute_longrope_parameters`): pair d turns at
  1 / (λ_d · base^(2d/rot)), λ the short factors while the call's length max(position) + 1 ≤ the original context
  and the long ones past it; the rotated features (here 12 of 16: fraction 0.75) × √(1 + ln(factor) / ln(original)),
  the features past them unscaled."""
  dim, rot, base, original, factor = 16, 12, 100.0, 16, 4.0
  rng = np.random.default_rng(3)
  short, long = (np.round(rng.uniform(1.0, high, rot // 2), 3) for high in (1.5, 8.0))
  q, k = (rng.normal(size=(2, 5, 2, dim)) for _ in range(2))
  positions = np.stack([np.sort(rng.choice(longest, 5, replace=False)) for _ in range(2)])
  positions[0, -1] = longest - 1  # the call reaches `longest`
  inv_freq = 1 / ((long if longest > original else short) * base ** (np.arange(0, rot, 2) / rot))
  scale = math.sqrt(1 + math.log(factor) / math.log(original))
  encoding = rope_encoding("rope", dim, dict(scaling="longrope", base=base, factor=factor, original_length=original,
                                             fraction=0.75, short_factor=list(short), long_factor=list(long)))
  coords = positional.Coordinates(jnp.asarray(positions))
  ours = encoding.transform_qk(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), coords, coords)
  for got, x in zip(ours, (q, k)):
    expected = np.concatenate([numpy_rope(x[..., :rot], positions, inv_freq) * scale, x[..., rot:]], axis=-1)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def xpos_numpy(x, positions, sign, gamma=512.0):
  """Sun et al. (2023): R(m) x ζ^(±m/γ) at absolute positions, ζ_i = (2i/d + 0.4)/1.4 on both features of pair i,
  in float64."""
  dim = x.shape[-1]
  zeta = np.tile((np.arange(0, dim, 2) / dim + 0.4) / 1.4, 2)
  theta = 10000.0 ** (-np.arange(0, dim, 2) / dim)
  return numpy_rope(x, positions, theta) * zeta ** (sign * positions[..., None, None] / gamma)


@pytest.mark.parametrize("impl", [name for name in attention.CORES if name != "linear"])  # linear: not softmax
@pytest.mark.parametrize("positions_kind", ["random", "offset"])
def test_xpos_matches_the_papers_formula(impl, positions_kind):
  """Causal softmax attention over q̃ = R(m) q ζ^(m/γ), k̃ = R(n) k ζ^(−n/γ) (the paper's absolute form, numpy)
  equals every softmax core's, which applies the encoding's transform itself (`transform_per_call`)."""
  dim = 16
  rng = np.random.default_rng(2)
  q, k, v = (rng.normal(size=(2, 6, 2, dim)) for _ in range(3))
  positions = np.sort(rng.integers(0, 300, (2, 6)), axis=1) + (1000 if positions_kind == "offset" else 0)
  logits = np.einsum("bqhd,bkhd->bhqk", xpos_numpy(q, positions, 1.0), xpos_numpy(k, positions, -1.0)) / dim ** 0.5
  logits = np.where(positions[:, None, None, :] <= positions[:, None, :, None], logits, -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  expected = np.einsum("bhqk,bkhd->bqhd", probs / probs.sum(-1, keepdims=True), v)
  encoding = rope_encoding("xpos", dim, None)
  pos = jnp.asarray(positions)
  out, _ = attention.build(impl)(*(jnp.asarray(x, jnp.float32) for x in (q, k, v)), attention.Terms(),
                                 AttentionMask(q_pos=pos, k_pos=pos, causal=True),
                                 transform=functools.partial(transform_at, encoding, None))
  # float32 angles and powers of positions relative to the call (|m − c| < 300): ≈ 1e-5 relative rounding
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-4)


@nnx.jit
def extend_at(model, tokens, cache, positions):
  return model.extend(tokens, cache, positions=positions)


def test_xpos_decoder_logits_do_not_change_when_positions_shift_by_a_million():
  """xPos is relative: ζ^(±pos/γ) formed from absolute positions overflows float32 (inf, then NaN) long before 10⁶,
  and float32 angles of 10⁶ are off by hundredths of a radian; relative to the call neither happens."""
  model = tiny_model("decoder", "xpos")
  tokens = random_tokens(0, (2, 12))
  positions = jnp.tile(jnp.arange(12), (2, 1))
  base, shifted = (np.asarray(forward(model, tokens, positions + shift, None)) for shift in (0, 10 ** 6))
  assert np.all(np.isfinite(shifted))
  np.testing.assert_allclose(shifted, base, rtol=1e-5, atol=1e-5)


def test_xpos_cached_decoding_past_100k_equals_the_full_forward():
  """A 5-token prompt, then single tokens, at positions 100000..100011: the cache keeps keys untransformed (a key
  scaled by ζ^(−n/γ) at n = 10⁵ is inf), and every step transforms them relative to its queries."""
  model = tiny_model("decoder", "xpos")
  tokens = random_tokens(1, (2, 12))
  positions = jnp.tile(jnp.arange(12), (2, 1)) + 100_000
  full = forward(model, tokens, positions, None)
  assert np.all(np.isfinite(np.asarray(full)))  # (assert_allclose takes NaN for NaN)
  cache = model.init_cache(2, 16)
  pieces = []
  for start, stop in [(0, 5)] + [(t, t + 1) for t in range(5, 12)]:
    logits, cache = extend_at(model, tokens[:, start:stop], cache, positions[:, start:stop])
    pieces.append(logits)
  np.testing.assert_allclose(np.asarray(jnp.concatenate(pieces, axis=1)), np.asarray(full), rtol=1e-5, atol=1e-5)


def test_linear_attention_refuses_xpos_whose_keys_are_transformed_at_every_call():
  """Its decoding state sums features of keys already transformed: it cannot transform them again per call."""
  with pytest.raises(ValueError, match=r"'xpos' uses the transform_qk hook, which attention.impl='linear' cannot "
                                       r"apply \(cannot transform every key at each call\)"):
    tiny_model("decoder", "xpos", attention=dict(impl="linear"))


def kerple_log_numpy(r1, r2, lag):
  """Chi et al. (2022), eq. (7): −r₁ · log(1 + r₂ |lag|)."""
  return -r1[:, None, None] * np.log1p(r2[:, None, None] * np.abs(lag))


def test_kerple_parameter_pushed_past_its_bound_recovers_under_gradient_steps():
  """The authors clamp the stored parameter, so one that left [0.01, ∞) keeps the gradient it has on the boundary;
  under gradient descent towards a bias made with r₁ = 0.5, r₁ = −1 (used as 0.01) must climb back into range."""
  encoding = rope_encoding("kerple_log", 8, None)
  r2 = np.asarray(encoding.params[...])[:, 1]
  encoding.params[...] = jnp.asarray(np.stack([np.full_like(r2, -1.0), r2], axis=1))
  positions = jnp.arange(16)[None]
  tile = Tile.whole(positions, positions)
  lag = np.arange(16)[None, :] - np.arange(16)[:, None]
  target = jnp.asarray(kerple_log_numpy(np.full_like(r2, 0.5), np.maximum(r2, 0.01), lag)[None], jnp.float32)

  def loss(enc):
    return jnp.mean((enc.logit_bias(None, None).values(tile) - target) ** 2)

  first = None
  for _ in range(200):
    grads = nnx.grad(loss)(encoding)
    first = grads.params[...] if first is None else first
    encoding.params[...] = encoding.params[...] - 2.0 * grads.params[...] * jnp.array([1.0, 0.0])  # r₁ only
  assert np.all(np.asarray(first)[:, 0] < 0), "a parameter outside its range must keep a gradient (towards the target)"
  np.testing.assert_allclose(np.asarray(encoding.params[...])[:, 0], 0.5, atol=0.05)


@pytest.mark.parametrize("name, high", [("kerple_log", (2.0, 1.0)), ("kerple_power", (1.0, 2.0))])
def test_kerple_initialisation_follows_the_authors(name, high):
  """chijames/KERPLE: log kernel p ~ U(0, 2), a ~ U(0, 1) for −p·log(1 + a|lag|); power kernel a ~ U(0, 1),
  p ~ U(0, 2) for −a·|lag|^p. zoo stores (scale, shape parameter) = (r₁, r₂) in that order for both."""
  with nnx.use_eager_sharding(False):
    encoding = positional.build(name, None, positional.ModelDims(4096, 8, 8 * 4096, 64, True), rngs=nnx.Rngs(0))
  params = np.asarray(encoding.params[...])
  for column, bound in enumerate(high):
    assert params[:, column].min() >= 0 and params[:, column].max() <= bound
    assert params[:, column].max() > 0.95 * bound  # the whole range is drawn


def test_fire_is_finite_with_its_threshold_at_zero_and_a_query_at_position_zero():
  """Li et al. (2024), appendix code: the normaliser ψ(max(q, L)) + 1e-6, so L → 0 at q = 0 gives 0 / 1e-6, not 0 / 0;
  c starts at 0.1. The reference is their formula in numpy."""
  encoding = rope_encoding("fire", 8, None)
  assert math.isclose(float(jax.nn.softplus(encoding.c[...])), 0.1, rel_tol=1e-5)
  encoding.threshold_scale[...] = jnp.zeros(())
  positions = jnp.arange(6)[None]
  tile = Tile.whole(positions, positions)
  bias = nnx.jit(lambda enc, tile: enc.logit_bias(None, None).values(tile))  # eager, every op would compile alone
  values = np.asarray(bias(encoding, tile))[0]  # [heads, q, k]
  c = 0.1
  lag = np.abs(np.arange(6)[None, :] - np.arange(6)[:, None])
  x = np.log(c * lag + 1) / (np.log(c * np.arange(6)[:, None] + 1) + 1e-6)
  hidden = np.maximum(x[..., None] * np.asarray(encoding.w1[...]) + np.asarray(encoding.b1[...]), 0.0)
  expected = np.einsum("qku,uh->hqk", hidden, np.asarray(encoding.w2[...])) + np.asarray(encoding.b2[...])[:, None, None]
  np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
  grads = nnx.jit(nnx.grad(lambda enc: jnp.sum(enc.logit_bias(None, None).values(tile))))(encoding)
  assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(nnx.state(grads)))


@pytest.mark.parametrize("core", ["reference", "chunked"])
def test_cope_gates_are_the_papers_whatever_the_softmax_scale(core):
  """Golovneva et al. (2024): g_ij = σ(q_i·k_j/√d). A model's attention temperature or unscaled logits change the
  softmax's scale, not the gates: the attention equals, in numpy, softmax(q·k · s + bias) v with the bias counted
  from σ(q·k/√d) (the term at the standard scale, checked against the definition in test_encoding_properties)."""
  from zoo import attention  # noqa: PLC0415
  rng = np.random.default_rng(4)
  batch, length, heads, head_dim = 1, 6, 2, 8
  q, k, v = (jnp.asarray(rng.normal(size=(batch, length, heads, head_dim)), jnp.float32) for _ in range(3))
  encoding = rope_encoding("cope", head_dim, {"num_positions": 4})
  encoding.embeddings[...] = jnp.asarray(rng.normal(size=(4, head_dim)), jnp.float32)
  positions = jnp.arange(length)[None]
  mask = attention.AttentionMask(positions, positions, causal=True)
  term = encoding.logit_bias(None, None)
  tile, allowed = Tile.whole(positions, positions), mask.dense()
  standard = head_dim ** -0.5
  qk = np.einsum("bqhd,bkhd->bhqk", np.asarray(q, np.float64), np.asarray(k, np.float64))
  bias = np.asarray(attention.dense_sum([term], tile, attention.Content(
      q, jnp.asarray(qk * standard, jnp.float32), allowed, standard)), np.float64)
  run = {"reference": attention.reference_attention, "chunked": attention.chunked_attention}[core]
  for scale in (standard, 0.25 * standard, 1.0):  # temperature 1, temperature 4, scale_logits=False
    logits = np.where(np.asarray(allowed), qk * scale + bias, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    expected = np.einsum("bhqk,bkhd->bqhd", probs / probs.sum(-1, keepdims=True), np.asarray(v, np.float64))
    kwargs = {"chunk_q": 4, "chunk_k": 4} if core == "chunked" else {}
    ours = run(q, k, v, mask=mask, bias=[term], softmax_scale=scale, **kwargs)
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-4, atol=1e-5, err_msg=f"softmax scale {scale}")


@pytest.mark.parametrize("p", [0.0, 0.5, 0.75, 1.0])
def test_p_rope_rotates_only_the_highest_frequency_fraction(p):
  """Barbero et al. (2025): p-RoPE keeps the int(p · d/2) highest frequencies θ_i = base^(−2i/d), i < int(p · d/2),
  and leaves the other pairs unrotated; p = 1 is RoPE, p = 0 no encoding. Reference: numpy rotate-half."""
  dim = 16
  rng = np.random.default_rng(5)
  x = rng.normal(size=(2, 7, 2, dim))
  positions = rng.integers(0, 500, (2, 7))
  theta = 10000.0 ** (-np.arange(0, dim, 2) / dim)
  theta[int(p * dim / 2):] = 0.0
  coords = positional.Coordinates(jnp.asarray(positions))
  ours = rope_encoding("rope", dim, {"p": p}).transform_qk(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32),
                                                           coords, coords)[0]
  np.testing.assert_allclose(np.asarray(ours), numpy_rope(x, positions, theta), rtol=1e-4, atol=5e-4)
  if p == 0.0:
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(jnp.asarray(x, jnp.float32)))


def nemo_sandwich_bias(q_pos, k_pos, dim, heads):
  """NeMo's SandwichRelativePositionEmbedding with the sinusoidal frequencies i = 0 .. d̄/2 − 1:
  (Σ_i cos(lag ω_i) − d̄/2) / r_h, r_h = 8h/H, in numpy: [batch, heads, q_len, k_len]."""
  lag = (k_pos[:, None, :] - q_pos[:, :, None]).astype(np.float64)
  omega = 10000.0 ** (-np.arange(0, dim, 2) / dim)
  total = np.cos(lag[..., None] * omega).sum(-1) - dim / 2
  return np.stack([total / (8 * h / heads) for h in range(1, heads + 1)], axis=1)


def numpy_attention_and_grads(q, k, v, bias, allowed, weights):
  """softmax(q·kᵀ/√d + bias) · v over the allowed pairs and the gradients of Σ weights ⊙ out wrt q, k, v."""
  scale = q.shape[-1] ** -0.5
  logits = np.where(allowed, np.einsum("bqhd,bkhd->bhqk", q, k) * scale + bias, -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  out = np.einsum("bhqk,bkhd->bqhd", probs, v)
  d_probs = np.einsum("bqhd,bkhd->bhqk", weights, v)
  d_logits = probs * (d_probs - (probs * d_probs).sum(-1, keepdims=True)) * scale
  return out, (np.einsum("bhqk,bkhd->bqhd", d_logits, k), np.einsum("bhqk,bqhd->bkhd", d_logits, q),
               np.einsum("bhqk,bqhd->bkhd", probs, weights))


SANDWICH_POSITIONS = {
    # runs: two packed sequences, and one starting at 1000 — every tile reads the per-call table
    "runs": lambda rng: np.stack([np.r_[np.arange(25), np.arange(15)], np.arange(40) + 1000]),
    # gaps wider than the call (randomized positions): the table cannot hold the lags, tiles take the formula
    "gaps": lambda rng: np.sort(rng.choice(5000, (2, 40), replace=True), axis=1),
}


def sandwich_case(positions_kind):
  rng = np.random.default_rng(5)
  q, k, v, weights = (rng.normal(size=(2, 40, 2, 8)) for _ in range(4))
  positions = SANDWICH_POSITIONS[positions_kind](rng)
  segments = np.stack([np.r_[np.zeros(25), np.ones(15)], np.zeros(40)]).astype(np.int32)
  allowed = ((positions[:, None, :] <= positions[:, :, None]) & (segments[:, None, :] == segments[:, :, None]))[:, None]
  mask = AttentionMask(q_pos=jnp.asarray(positions), k_pos=jnp.asarray(positions), q_segment_ids=jnp.asarray(segments),
                       k_segment_ids=jnp.asarray(segments), causal=True)
  return (q, k, v, weights), positions, allowed, mask


def small_tiles_core(impl):
  """Core `impl` with 16-wide tiles, so a 40-long call walks several of them."""
  return attention.build(impl, {"pallas": dict(block_q=16, block_k=16), "chunked": dict(chunk_q=16, chunk_k=16)}.get(
      impl))


def core_output_and_grads(impl, bias, q, k, v, weights, mask):
  core = small_tiles_core(impl)

  def loss(q, k, v):
    out = core(q, k, v, attention.Terms(bias), mask)[0]
    return jnp.sum(out * weights), out

  (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(
      *(jnp.asarray(x, jnp.float32) for x in (q, k, v)))
  return out, grads


SANDWICH_CORES = attention.cores_serving(positional.attention_terms(
    rope_encoding("sandwich", 8, None), *(positional.Coordinates(jnp.zeros((1, 4), jnp.int32)),) * 2)[0])


@pytest.mark.parametrize("positions_kind", SANDWICH_POSITIONS)
@pytest.mark.parametrize("impl", SANDWICH_CORES)
def test_sandwich_attention_matches_nemo_in_every_core(impl, positions_kind):
  """Every core that serves Sandwich (tabulated per call) gives the attention of NeMo's bias computed in numpy:
  outputs ≤ 1e-5, gradients wrt q, k, v ≤ 1e-4."""
  assert {"xla", "chunked", "pallas"} <= set(SANDWICH_CORES)
  (q, k, v, weights), positions, allowed, mask = sandwich_case(positions_kind)
  encoding = rope_encoding("sandwich", 8, None)
  bias = positional.attention_terms(encoding, positional.Coordinates(mask.q_pos), positional.Coordinates(mask.k_pos))[0]
  expected, expected_grads = numpy_attention_and_grads(
      q, k, v, nemo_sandwich_bias(positions, positions, encoding.options.dim, 2), allowed, weights)
  out, grads = core_output_and_grads(impl, bias, q, k, v, weights, mask)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
  for got, want, name in zip(grads, expected_grads, "qkv"):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4, err_msg=f"d{name}")


@pytest.mark.parametrize("impl", SANDWICH_CORES)
def test_every_core_reads_sandwich_from_its_per_call_table(impl):
  """The table holds NeMo's bias at every lag |lag| < max(q_len, k_len), and on runs of positions the cores read
  only it: with the formula's parameters made NaN the output stays finite and right (positions with gaps would read
  the parameters and turn NaN)."""
  (q, k, v, weights), positions, allowed, mask = sandwich_case("runs")
  encoding = rope_encoding("sandwich", 8, None)
  lag_function = encoding.logit_bias(None, None)
  table = lag_function.for_call(mask.q_pos, mask.k_pos)
  assert isinstance(table, attention.LagTable) and table.reach == 40
  dim = encoding.options.dim
  np.testing.assert_allclose(np.asarray(table.operand[:, 1:]), nemo_sandwich_bias(
      np.zeros((1, 1)), np.arange(-39, 40)[None], dim, 2)[0, :, 0], rtol=1e-5, atol=1e-5)
  poisoned = table.replace(operand=table.operand.at[:, 0].set(jnp.nan))
  expected, _ = numpy_attention_and_grads(q, k, v, nemo_sandwich_bias(positions, positions, dim, 2), allowed, weights)
  out = jax.jit(lambda q, k, v: small_tiles_core(impl)(q, k, v, attention.Terms((poisoned,)), mask)[0])(
      *(jnp.asarray(x, jnp.float32) for x in (q, k, v)))
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
