"""SPE against its closed forms: Monte-Carlo cross-covariances of the codes, the RNG-free numbers of
shared/papers/spe.md, the gate at its two ends, and the noise stream (redrawn while training, fixed in eval)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import forward, random_tokens, tiny_model
from zoo import positional

DRAWS = 64  # noise draws, each with R realizations
# The code machinery both kinds share (the transform, row-by-row codes, the noise stream) is checked on convSPE by
# default and on sineSPE (≈ 3× the compile time) in the slow suite; each kind's closed form runs by default.
BOTH_KINDS = [pytest.param("spe_sine", marks=pytest.mark.slow), "spe_conv"]


def build(name, heads=1, head_dim=1, max_length=16, **options):
  dims = positional.ModelDims(num_heads=heads, head_dim=head_dim, d_model=heads * head_dim, max_length=max_length,
                              causal=False)
  with nnx.use_eager_sharding(False):
    return positional.build(name, options, dims, rngs=nnx.Rngs(params=0))


def monte_carlo_kernel(encoding, lags, query_position=8):
  """E[Σ_r q̄_r(m) k̄_r(n)] · √(D/R) for n = m − lag, averaged over DRAWS noise keys: mean and standard error,
  [lags, heads, head_dim] each."""
  q_pos = jnp.full((1, 1), query_position)
  k_pos = (query_position - jnp.asarray(lags))[None]
  def one_draw(key):
    q_bar, k_bar = encoding.codes(q_pos, k_pos, key)  # [1, 1, h, d, R], [1, lags, h, d, R]
    return jnp.sum(q_bar * k_bar, axis=-1)[0]  # [lags, h, d]
  samples = np.asarray(jax.jit(jax.vmap(one_draw))(jax.random.split(jax.random.key(0), DRAWS)))
  normaliser = np.sqrt(encoding.dims.head_dim / encoding.options.num_realizations)
  return samples.mean(0) * normaliser, samples.std(0) * normaliser / np.sqrt(DRAWS)


def sine_closed_form(freqs, offsets, gains, lags):
  """(1/2K) Σ_k softplus(gains_k)² cos(2π f_k τ + θ_k), f = sigmoid(freqs)/2, in numpy: [lags, heads, head_dim]."""
  f = 1 / (1 + np.exp(-freqs)) / 2
  g2 = np.log1p(np.exp(gains)) ** 2
  tau = np.asarray(lags, float)[:, None, None, None]
  return (g2 * np.cos(2 * np.pi * f * tau + offsets)).sum(-1) / (2 * freqs.shape[-1])


def test_sine_kernel_reproduces_the_rng_free_numbers_of_the_paper_notes():
  spe = build("spe_sine", num_sines=2, num_realizations=256, gated=False)
  spe.freqs[...] = jnp.array([[[-4.0, -2.0]]])
  spe.offsets[...] = jnp.array([[[0.3, -1.0]]])
  spe.gains[...] = jnp.array([[[0.5, 1.5]]])
  expected = [0.6176, 0.8090, 0.9183, 0.9297, 0.8410]  # shared/papers/spe.md, lags m − n = 0..4
  closed = sine_closed_form(np.array([[[-4.0, -2.0]]]), np.array([[[0.3, -1.0]]]), np.array([[[0.5, 1.5]]]),
                            range(5))
  np.testing.assert_allclose(closed[:, 0, 0], expected, atol=1e-4)
  mean, stderr = monte_carlo_kernel(spe, range(5))
  assert np.all(np.abs(mean[:, 0, 0] - expected) < 5 * stderr[:, 0, 0] + 1e-3), (mean[:, 0, 0], stderr[:, 0, 0])


def test_sine_cross_covariance_matches_its_closed_form_for_random_parameters():
  spe = build("spe_sine", heads=2, head_dim=3, num_sines=4, num_realizations=128, gated=False)
  lags = [-6, -1, 0, 2, 7]
  mean, stderr = monte_carlo_kernel(spe, lags)
  closed = sine_closed_form(np.asarray(spe.freqs[...]), np.asarray(spe.offsets[...]), np.asarray(spe.gains[...]),
                            lags)
  assert np.all(np.abs(mean - closed) < 5 * stderr + 1e-3), np.abs(mean - closed) / stderr


def test_conv_cross_covariance_is_the_cross_correlation_of_its_filters_and_vanishes_beyond_the_kernel():
  taps = 4
  spe = build("spe_conv", heads=2, head_dim=2, kernel_size=taps, num_realizations=128, gated=False)
  lags = list(range(-taps - 1, taps + 2))
  mean, stderr = monte_carlo_kernel(spe, lags)
  w_q, w_k = np.asarray(spe.query_filter[...]), np.asarray(spe.key_filter[...])  # [h, d, taps]
  closed = np.stack([np.zeros((2, 2)) + sum(w_q[..., t] * w_k[..., t + lag] for t in range(taps) if 0 <= t + lag < taps)
                     for lag in lags])  # Σ_t w_q[t] w_k[t + m − n]
  assert np.all(np.abs(mean - closed) < 5 * stderr + 1e-3), np.abs(mean - closed) / stderr
  beyond = [i for i, lag in enumerate(lags) if abs(lag) >= taps]
  np.testing.assert_array_equal(np.asarray(closed)[beyond], 0.0)
  assert np.all(np.abs(mean[beyond]) < 5 * stderr[beyond] + 1e-3)


@pytest.mark.parametrize("name", ["spe_sine", pytest.param("spe_conv", marks=pytest.mark.slow)])  # the gate is shared
def test_gate_at_one_is_pure_spe_and_at_zero_position_agnostic(name):
  gated = build(name, heads=2, head_dim=2, num_realizations=8)
  ungated = build(name, heads=2, head_dim=2, num_realizations=8, gated=False)
  for param in ("freqs", "offsets", "gains") if name == "spe_sine" else ("query_filter", "key_filter"):
    getattr(ungated, param)[...] = getattr(gated, param)[...]
  positions, key = jnp.array([[0, 3, 5, 11]]), jax.random.key(3)
  codes = nnx.jit(lambda spe: spe.codes(positions, positions, key))
  gated.gate[...] = jnp.full(gated.gate.shape, 40.0)  # σ = 1
  for ours, pure in zip(codes(gated), codes(ungated)):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(pure), rtol=1e-6, atol=1e-7)
  gated.gate[...] = jnp.full(gated.gate.shape, -40.0)  # σ = 0: one code for every position, queries and keys
  q_bar, k_bar = (np.asarray(c) for c in codes(gated))
  np.testing.assert_allclose(q_bar, np.broadcast_to(q_bar[:, :1], q_bar.shape), atol=1e-7)
  np.testing.assert_allclose(k_bar, q_bar, atol=1e-7)


def test_gated_cross_covariance_mixes_the_kernel_with_a_constant():
  """σ P(τ) + (1 − σ): checked at σ = sigmoid(0.4) against the closed sine kernel."""
  spe = build("spe_sine", heads=1, head_dim=2, num_sines=3, num_realizations=128)
  spe.gate[...] = jnp.full(spe.gate.shape, 0.4)
  lags = [0, 3, 9]
  mean, stderr = monte_carlo_kernel(spe, lags)
  sigma = 1 / (1 + np.exp(-0.4))
  closed = sigma * sine_closed_form(np.asarray(spe.freqs[...]), np.asarray(spe.offsets[...]),
                                    np.asarray(spe.gains[...]), lags) + (1 - sigma)
  assert np.all(np.abs(mean - closed) < 5 * stderr + 1e-3), np.abs(mean - closed) / stderr


@pytest.mark.parametrize("name", BOTH_KINDS)
def test_transform_is_the_code_weighted_sum_of_queries_and_keys(name):
  """q̂ = Σ_d q_d q̄'_d: the transform (codes folded in without forming them) against the codes it is made of."""
  spe = build(name, heads=2, head_dim=3, num_realizations=8)
  q, k = jax.random.normal(jax.random.key(1), (2, 2, 5, 2, 3))  # [batch, len, heads, head_dim] each
  positions, key = jnp.array([[0, 3, 5, 11, 12], [1, 2, 3, 4, 5]]), jax.random.key(3)
  q_hat, k_hat = nnx.jit(lambda spe: spe.transform_qk_with_key(q, k, positions, positions, key))(spe)
  q_bar, k_bar = nnx.jit(lambda spe: spe.codes(positions, positions, key))(spe)
  for hat, x, bar in ((q_hat, q, q_bar), (k_hat, k, k_bar)):
    np.testing.assert_allclose(np.asarray(hat), np.einsum("blhd,blhdr->blhr", np.asarray(x), np.asarray(bar)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", BOTH_KINDS)
def test_rows_sharing_positions_get_the_codes_of_the_row_by_row_path(name):
  """A batch whose rows share their positions forms the codes once; a batch with differing rows goes row by row
  (`project`): the same row, key and parameters give the same q̂, k̂ either way — values and gradients."""
  spe = build(name, heads=2, head_dim=3, num_realizations=8)
  q, k = jax.random.normal(jax.random.key(1), (2, 2, 5, 2, 3))
  row, other = jnp.array([0, 3, 5, 11, 12]), jnp.array([1, 2, 3, 4, 5])
  shared, differing = jnp.stack([row, row]), jnp.stack([row, other])
  graphdef, params, rest = nnx.split(spe, nnx.Param, ...)

  def first_row(params, q, k, positions):  # q̂ · k̂ summed over row 0, a scalar to differentiate
    q_hat, k_hat = nnx.merge(graphdef, params, rest).transform_qk_with_key(q, k, positions, positions,
                                                                          jax.random.key(3))
    return jnp.sum(q_hat[0] * k_hat[0]), (q_hat[0], k_hat[0])

  grad = jax.jit(jax.grad(first_row, argnums=(0, 1, 2), has_aux=True))
  (g_params, g_q, g_k), (q_shared, k_shared) = grad(params, q, k, shared)
  (h_params, h_q, h_k), (q_rows, k_rows) = grad(params, q, k, differing)
  for ours, theirs in ((q_shared, q_rows), (k_shared, k_rows), (g_q[0], h_q[0]), (g_k[0], h_k[0])):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-6)
  for ours, theirs in zip(jax.tree.leaves(g_params), jax.tree.leaves(h_params)):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("impl", [pytest.param("xla", marks=pytest.mark.slow), "linear"])
def test_position_agnostic_gate_makes_the_model_ignore_positions(impl):
  model = tiny_model("encoder", "spe_sine", head="token", num_classes=5, attention=dict(impl=impl))
  model.eval()
  encoding = model.backbone.positional
  encoding.gate[...] = jnp.full(encoding.gate.shape, -40.0)
  tokens = random_tokens(0, (2, 8))
  positions = jnp.tile(jnp.arange(8), (2, 1))
  scrambled = jnp.tile(jnp.array([40, 3, 17, 0, 9, 2, 33, 5]), (2, 1))
  np.testing.assert_allclose(np.asarray(forward(model, tokens, scrambled, None)),
                             np.asarray(forward(model, tokens, positions, None)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", BOTH_KINDS)
def test_noise_is_redrawn_while_training_and_fixed_in_eval(name):
  spe = build(name, heads=2, head_dim=4, num_realizations=8)
  q = jax.random.normal(jax.random.key(1), (1, 5, 2, 4))
  positions = jnp.arange(5)[None]
  coords = positional.Coordinates(positions)
  transform = nnx.jit(lambda spe: spe.transform_qk(q, q, coords, coords)[0])
  first, second = transform(spe), transform(spe)
  assert first.shape == (1, 5, 2, 8)
  assert not np.allclose(np.asarray(first), np.asarray(second))
  spe.noise.deterministic = True  # what model.eval() sets
  first, second = transform(spe), transform(spe)
  np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
  spe.noise.eval_key[...] = jax.random.key(9)  # another evaluation draw, chosen by key
  assert not np.allclose(np.asarray(transform(spe)), np.asarray(first))
