"""Randomized positions (Ruoss et al. 2023): sorted random subsets of a longer range while training, the true
positions in evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import default_or_slow, forward, random_tokens, tiny_model
from zoo.positional.randomized import randomized_positions


def test_draws_are_ordered_distinct_and_in_range_per_document():
  positions = jnp.asarray(np.stack([np.r_[np.arange(10), np.arange(6)], np.arange(16)]))  # row 0 packs two documents
  drawn = np.asarray(randomized_positions(jax.random.key(0), positions, 100))
  assert drawn.min() >= 0 and drawn.max() < 100
  for row, (start, stop) in ((0, (0, 10)), (0, (10, 16)), (1, (0, 16))):
    assert np.all(np.diff(drawn[row, start:stop]) > 0)
  np.testing.assert_array_equal(drawn[0, 10:], drawn[0, :6])  # a document's p-th position is the p-th draw
  assert not np.array_equal(drawn, np.asarray(randomized_positions(jax.random.key(1), positions, 100)))


@pytest.mark.parametrize("pe", default_or_slow(["learned", "alibi", "rope"], ("rope",)))
def test_training_sees_random_positions_and_evaluation_the_true_ones(pe):
  model = tiny_model("decoder", pe, positional=dict(randomized_positions=48))
  plain = tiny_model("decoder", pe)  # the same seed: the same parameters
  tokens = random_tokens(0, (2, 12))
  first, second = forward(model, tokens, None, None), forward(model, tokens, None, None)
  assert not np.allclose(np.asarray(first), np.asarray(second))  # redrawn at every training call
  model.eval()
  plain.eval()
  np.testing.assert_allclose(np.asarray(forward(model, tokens, None, None)),
                             np.asarray(forward(plain, tokens, None, None)), rtol=1e-6, atol=1e-6)


def test_range_must_cover_max_length():
  with pytest.raises(ValueError, match=r"positional.randomized_positions must be 0 \(off\) or >= max_length \(48\)"):
    tiny_model("decoder", "rope", positional=dict(randomized_positions=20))
