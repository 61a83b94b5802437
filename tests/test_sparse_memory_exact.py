"""The exact attainable error of the sparse-memory model (zoo/experiments/sparse_memory_exact.py) against brute force:
every ±1 sequence of a short length enumerated, the paper's one-layer model written here from its definition, its
readout (constant, residual, one weight per head) fitted by least squares over all of them — the mean over the
enumeration is the expectation over i.i.d. signs, so the two must agree to rounding. Both solves drop directions
below 1e-6 of the largest singular value (what float32 cannot use); the enumeration's features over √(2^L) have the
kernel's singular values (the signs' columns are orthogonal), so the cut is the same one."""

import itertools

import numpy as np
import pytest

from zoo.experiments.sparse_memory_exact import attainable_errors

LENGTH = 8  # 2^8 sequences
LIGHT_RATE = 5.0 / LENGTH  # the experiment's t = s / length
RCOND = 1e-6


def brute_force_error(target: str, phi: str, p: np.ndarray) -> float:
  """Mean squared error at the last position over all 2^LENGTH sign sequences of the best readout ŷ = c + b·x_t +
  Σ_h a_h Σ_s softmax_s(p_h·φ(s)) x_{t−s}, for the target y = Σ_{s≥1} ρ(s) x_{t−s}."""
  x = np.array(list(itertools.product([-1.0, 1.0], repeat=LENGTH)))  # [2^L, L]; x[:, -1] is x_t
  s = np.arange(LENGTH)[::-1]  # distance of each position from the last
  rho = np.where(s >= 1, np.maximum(s, 1) ** -0.5 if target == "heavy_tailed" else np.exp(-LIGHT_RATE * s), 0.0)
  y = x @ rho
  phi_s = -np.log(np.maximum(s, 1)) if phi == "log" else -s.astype(float)
  logits = p[:, None] * phi_s[None, :]  # [heads, L]
  w = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  features = np.column_stack([np.ones(len(x)), x[:, -1], x @ w.T])
  residual = y - features @ np.linalg.lstsq(features, y, rcond=RCOND)[0]
  return float(np.mean(residual ** 2))


MATCHED = {("heavy_tailed", "log"): 0.5, ("light_tailed", "lin"): LIGHT_RATE}  # one head at this p is the target


@pytest.mark.parametrize("target,phi", [("heavy_tailed", "lin"), ("light_tailed", "log"), ("heavy_tailed", "log"),
                                        ("light_tailed", "lin")])
def test_attainable_error_is_attained_and_no_grid_point_beats_it(target, phi):
  found = attainable_errors(target, phi, (1, 2), LENGTH, LIGHT_RATE)
  for heads, (error, log_p) in found.items():
    assert log_p.shape == (heads,)
    # The value is what the enumerated model makes at the returned decays (float32 targets: 1e-6 relative).
    assert brute_force_error(target, phi, np.exp(log_p)) == pytest.approx(error, rel=1e-5, abs=1e-12)
    # And no decay on a grid does better, for one head or two.
    grid = np.exp(np.linspace(-6, 6, 121 if heads == 1 else 21))
    best = min(brute_force_error(target, phi, np.array(p)) for p in itertools.product(grid, repeat=heads))
    assert error <= best * (1 + 1e-5) + 1e-12, (heads, error, best)
  if (target, phi) in MATCHED:
    assert found[1][0] < 1e-12 and np.exp(found[1][1][0]) == pytest.approx(MATCHED[target, phi], rel=1e-3)
  else:  # one head of the other type cannot, a second one helps
    assert found[1][0] > 1e-3 and found[2][0] < found[1][0] / 10
