"""Each encoding's pure function against an independent reference: a public library's numbers or the paper's
formula."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from zoo import positional
from zoo.attention import AlibiBias


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
  ours = AlibiBias(slopes=jnp.asarray(positional.alibi_slopes(heads)), q_pos=positions, k_pos=positions).dense()
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
