r"""The attainable error of Wang & E's one-layer model on Task III, computed exactly rather than trained: the floor
the trained points of the `sparse_memory` experiment should sit on if training, not the model, were no limit.

The model (the paper's: one causal dot-product-free layer, H heads with logits p_h·φ(s) at distance s, a residual,
a linear readout, no feed-forward layer) at the scored last position t = L − 1 computes

  ŷ = c + b·x_t + Σ_h a_h Σ_{s=0}^{t} w_h(s) x_{t−s},    w_h(s) = e^{p_h φ(s)} / Σ_{s'=0}^{t} e^{p_h φ(s')}.

Why this form: a token embeds one of two vectors, so every head's value (after W_O) is affine in the sign, m_h + d_h·x;
the weights sum to one, so head h adds m_h + d_h·Σ_s w_h(s) x_{t−s}; the readout is linear; the residual carries
x_t; constants gather in c. The target is y = Σ_{s=1}^{t} ρ(s) x_{t−s}, so with k(s) = b·[s = 0] + Σ_h a_h w_h(s)

  y − ŷ = −c + Σ_{s=0}^{t} (ρ(s) − k(s)) x_{t−s},    E(y − ŷ)² = c² + Σ_{s=0}^{t} (ρ(s) − k(s))²,

exactly, because the signs are i.i.d. with mean 0 and variance 1 (no sampling, no horizon cut: the sum is the whole
sequence). The minimum over c is 0, which leaves

  R(p) = min_{b, a} Σ_{s=0}^{t} (ρ(s) − b·[s = 0] − Σ_h a_h w_h(s))²,

a least-squares problem in the readout (b, a) for given decays p (solved without the directions float32 cannot
use: RCOND below). R is minimised over log p: for H = 1 a grid over p ∈ [e^−9, e^7] refined by a bounded 1-D search
(global up to the grid's resolution); for more heads by coordinate descent — the same 1-D search for one head at a
time, the others fixed, round after round, then L-BFGS on all log p together — from two starts (the next smaller H's
solution with the new heads added one at a time by the 1-D search, and decays spread evenly in log p), keeping the
better: the landscape has local minima (tests/test_sparse_memory_exact.py caught a greedy search stuck in one).
Every value is R at concrete p, so it is attained by a concrete model: an upper bound on the class's infimum that
is exact for H = 1. Extra heads never raise it (a head with a = 0 is off). With ρ in the task's float32 the floor
is below 1e-14: the matched types (heavy tail with log-type φ, light tail with lin-type at p = β) reach it with one
head. The experiment trains this very class: zoo's block without its feed-forward layer (`mlp.dim=0`) and norms
(`norm.kind="none"`), so its embeddings, values and readout are affine in the signs as above.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import optimize

from zoo.data import tasks

LOG_P_RANGE = (-9.0, 7.0)  # p from 1e-4 (uniform attention) to 1e3 (all weight on the nearest positions)
GRID = np.linspace(*LOG_P_RANGE, 161)
# Directions of the kernel matrix below RCOND × its largest singular value are not used: reading them needs readout
# weights RCOND⁻¹ times the others, cancelling terms that float32 (ε ≈ 1.2e-7) cannot tell apart — e.g. a lin-type
# head with p = 30 minus the residual's x_t leaves e^−30·x_{t−1}. Without the cut such limits reach 1e-15 with a few
# heads, an error no float32 model attains. Where the best fit needs such cancellations the number depends on the cut
# (full variant, length 128, light tail with log-type φ, H = 64: 1.2e-7 at a cut of 1e-8, 3.7e-5 at 1e-6, 3.4e-4 at
# 1e-4, 0.015 at 1e-3; for H ≤ 4 and the heavy tail with lin-type φ at H ≤ 8 it moves by less than 4×).
RCOND = 1e-6
MAX_ROUNDS = 4  # coordinate-descent rounds per start: bounds the cost (the full figure computes in ≈ 1 min)
SPREAD = (-5.0, 3.0)  # the second start's log p range
FLOOR = 1e-12  # float32 ρ's rounding: an error below it is 0


def target_kernel(target: str, length: int, light_rate: float) -> np.ndarray:
  """ρ [length] float64, ρ(0) = 0, read from the task's own targets: Task III is linear, so the response to a sign
  sequence that is 1 at position 0 and 0 elsewhere is y_s = ρ(s)."""
  task = tasks.build("sparse_memory", {"target": target, "length": length, "light_rate": light_rate})
  impulse = np.zeros(length)
  impulse[0] = 1.0
  return task.targets(impulse).astype(np.float64)


def attention_weights(phi: str, log_p: np.ndarray, length: int) -> np.ndarray:
  """w [heads, length]: the last position's softmax over distances s = 0..length−1 of p·φ(s), φ as memory_rpe's."""
  s = np.arange(length, dtype=np.float64)
  distance = -np.log(np.maximum(s, 1.0)) if phi == "log" else -s  # φ(s)
  logits = np.exp(log_p)[:, None] * distance[None, :]
  w = np.exp(logits - logits.max(axis=1, keepdims=True))
  return w / w.sum(axis=1, keepdims=True)


def risk(rho: np.ndarray, phi: str, log_p: np.ndarray) -> float:
  """R(p): the least-squares readout's expected squared error at decays exp(log_p) [heads]."""
  kernel = np.concatenate([np.eye(1, rho.shape[0]), attention_weights(phi, np.asarray(log_p, np.float64),
                                                                      rho.shape[0])]).T  # [length, 1 + heads]
  readout = np.linalg.lstsq(kernel, rho, rcond=RCOND)[0]  # [b, a_1..a_H]
  return float(np.sum((rho - kernel @ readout) ** 2))


def _line_search(rho: np.ndarray, phi: str, log_p: np.ndarray, head: int) -> np.ndarray:
  """`log_p` with head `head`'s entry the best of GRID for the others fixed, refined by a bounded 1-D search."""
  def at(x: float) -> float:
    return risk(rho, phi, np.concatenate([log_p[:head], [x], log_p[head + 1:]]))

  i = int(np.argmin([at(x) for x in GRID]))
  lo, hi = GRID[max(i - 1, 0)], GRID[min(i + 1, len(GRID) - 1)]
  refined = optimize.minimize_scalar(at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
  best = min((at(x), x) for x in (refined.x, GRID[i], log_p[head]))[1]  # never worse than where it was
  return np.concatenate([log_p[:head], [best], log_p[head + 1:]])


def _descend(rho: np.ndarray, phi: str, log_p: np.ndarray) -> np.ndarray:
  """Coordinate descent by line searches, head after head, until a round gains less than 1e-6 relative (at most
  MAX_ROUNDS), then L-BFGS on all log p together (kept only if it gains)."""
  error = risk(rho, phi, log_p)
  for _ in range(MAX_ROUNDS):
    for head in range(log_p.shape[0]):
      log_p = _line_search(rho, phi, log_p, head)
    previous, error = error, risk(rho, phi, log_p)
    if error >= previous * (1 - 1e-6):
      break
  polished = optimize.minimize(lambda x: risk(rho, phi, x), log_p, method="L-BFGS-B",
                               bounds=[LOG_P_RANGE] * log_p.shape[0])
  return polished.x if polished.fun < error else log_p


def attainable_errors(target: str, phi: str, heads: Sequence[int], length: int,
                      light_rate: float) -> dict[int, tuple[float, np.ndarray]]:
  """{H: (error, log p [H])} for increasing `heads`: the smallest expected squared error at the last position found
  for H heads (the module's docstring derives it), and decays that attain it."""
  rho = target_kernel(target, length, light_rate)
  log_p, found = np.zeros(0), {}
  for h in sorted(heads):
    if found and found[max(found)][0] < FLOOR:  # exact already: more heads are off (a = 0)
      found[h] = (found[max(found)][0], np.pad(log_p, (0, h - log_p.shape[0]), constant_values=LOG_P_RANGE[1]))
      continue
    while log_p.shape[0] < h:  # a new head at the best decay for the others fixed (it starts off: p = e^7)
      log_p = _line_search(rho, phi, np.append(log_p, LOG_P_RANGE[1]), log_p.shape[0])
    # Two starts, as the landscape has local minima: the greedy one and decays spread evenly in log p.
    starts = (log_p, np.linspace(*SPREAD, h) if h > 1 else log_p)
    log_p = min((_descend(rho, phi, start) for start in starts), key=lambda x: risk(rho, phi, x))
    found[h] = (risk(rho, phi, log_p), log_p.copy())
  return found
