"""Sparse-memory regression targets of Wang & E (NeurIPS 2024; shared/papers/sparse_memory.md).

Inputs are i.i.d. signs x_t ∈ {±1} (tokens 0 ↔ −1 and 1 ↔ +1); the target y_t at every position is a real number
that depends on a few, possibly far, past inputs — the memory structure the paper proves Transformers with relative
encodings can represent, with head counts that depend on the RPE type:

- Task I, fixed lags T_1..T_M (`lags`): `relu` y_t = Σ_j a_j ReLU(w_j · z_t + b_j) / √width with
  z_t = (x_{t−T_1}, …, x_{t−T_M}) and a fixed random network (the paper's "sparse Boolean" target with lags
  (48, 56, 99), "complex readout" with lags (99,)); `sum` y_t = Σ_m x_{t−T_m} ("simple readout").
- Task II, adaptive lags (`adaptive`): lag_0 = 0, lag_k = g(x_{t−lag_{k−1}}) for k = 1..`depth`, y_t = Π_k x_{t−lag_k},
  with g(+1), g(−1) = `adaptive_lags` — for depth 2 and g(1) = 1, g(−1) = 2 the paper's
  y_t = x_t · x_{t−g(x_t)} · x_{t−g(x_{t−g(x_t)})}.
- Task III, essentially sparse memory: y_t = Σ_{s=1}^{t} x_{t−s} ρ(s) with `heavy_tailed` ρ(s) = s^−α
  (`heavy_exponent`) or `light_tailed` ρ(s) = e^{−βs} (`light_rate`). The sum starts at s = 1 (the paper leaves
  ρ(0) open); at the last position of a length-1000 sequence it is the paper's Σ_{s<1000} x_s ρ(1000 − s).

Scored positions (weight 1) are those whose whole memory lies inside the sequence — t ≥ the largest lag (Task I),
t ≥ max g (Task II), t ≥ 1 (Task III) — or with `scored="last"` only the last position (the paper's
single-output Task III). Loss: squared error; metric: mean absolute error.

The model is the paper's: causal (the encoder family with `causal=True`, fixed by the task) with a one-output token
head, a regression at every position.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import TaskExamples, data_name, tensor
from zoo.data.tasks.registry import register

SPLITS = ("train", "validation")
TARGET_SEED = 2  # the stream index of the fixed random ReLU network (splits use 0 and 1)


def lagged(x: np.ndarray, lags: tuple[int, ...]) -> np.ndarray:
  """z [length, M] with z[t, m] = x[t − lags[m]] (0 where t < lag: such positions are not scored)."""
  z = np.zeros((x.shape[0], len(lags)), np.float32)
  for m, lag in enumerate(lags):
    z[lag:, m] = x[:x.shape[0] - lag]
  return z


def relu_network(seed: int, width: int, inputs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The fixed random readout (w [width, inputs], b [width], a [width]) of the `relu` target, all N(0, 1)."""
  rng = np.random.default_rng([seed, TARGET_SEED])
  return (rng.standard_normal((width, inputs)).astype(np.float32), rng.standard_normal(width).astype(np.float32),
          rng.standard_normal(width).astype(np.float32))


def adaptive_target(x: np.ndarray, g: tuple[int, int], depth: int) -> np.ndarray:
  """y [length]: Π_{k=0..depth} x[t − lag_k], lag_0 = 0, lag_k = g(x[t − lag_{k−1}]) (indices clipped at 0)."""
  t = np.arange(x.shape[0])
  lag = np.zeros_like(t)
  y = x.copy()
  for _ in range(depth):
    lag = np.where(x[np.maximum(t - lag, 0)] > 0, g[0], g[1])
    y = y * x[np.maximum(t - lag, 0)]
  return y


def kernel_target(x: np.ndarray, rho: np.ndarray) -> np.ndarray:
  """y [length]: Σ_{s=1}^{t} x[t − s] ρ(s); `rho` [length] holds ρ(0..length−1) and ρ(0) is ignored."""
  kernel = np.concatenate([[0.0], rho[1:]])
  return np.convolve(x.astype(np.float64), kernel)[:x.shape[0]]


@register("sparse_memory")
class SparseMemory(Task):
  family = "encoder"
  objective = "regression"

  @dataclasses.dataclass(frozen=True)
  class Options:
    target: Literal["relu", "sum", "adaptive", "heavy_tailed", "light_tailed"] = "relu"
    length: int = 1000
    lags: tuple[int, ...] = (48, 56, 99)  # Task I
    relu_width: int = 64
    adaptive_lags: tuple[int, ...] = (1, 2)  # Task II: g(+1), g(−1)
    depth: int = 2  # Task II: nested look-ups
    heavy_exponent: float = 0.5  # Task III: ρ(s) = s^−α
    light_rate: float = 5.0  # Task III: ρ(s) = exp(−β s)
    scored: Literal["all", "last"] = "all"
    num_train: int = 16_384
    num_eval: int = 512
    seed: int = 0

    def __post_init__(self):
      for field in ("length", "relu_width", "depth", "num_train", "num_eval"):
        check(getattr(self, field) >= 1, f"task 'sparse_memory': {field} must be >= 1, got {getattr(self, field)}")
      check(len(self.lags) >= 1 and all(isinstance(t, int) and t >= 0 for t in self.lags),
            f"task 'sparse_memory': lags must be one or more integers >= 0, got {self.lags}")
      check(len(self.adaptive_lags) == 2 and all(isinstance(t, int) and t >= 1 for t in self.adaptive_lags),
            f"task 'sparse_memory': adaptive_lags must be two integers >= 1 (g(+1), g(-1)), got {self.adaptive_lags}")
      check(self.first_scored < self.length, f"task 'sparse_memory': length ({self.length}) must exceed the "
                                             f"memory span ({self.first_scored}) of target {self.target!r}")

    @property
    def first_scored(self) -> int:
      """The first position whose whole memory lies inside the sequence."""
      if self.target in ("relu", "sum"):
        return max(self.lags)
      return max(self.adaptive_lags) if self.target == "adaptive" else 1

  @property
  def length(self) -> int:
    return self.options.length

  def model_fields(self):
    return {"vocab_size": 2, "max_length": self.length, "head": "token", "num_classes": 1, "causal": True}

  def targets(self, x: np.ndarray) -> np.ndarray:
    """y [length] float32 for signs `x` [length]."""
    o = self.options
    if o.target == "relu":
      w, b, a = relu_network(o.seed, o.relu_width, len(o.lags))
      y = np.maximum(lagged(x, o.lags) @ w.T + b, 0.0) @ a / np.sqrt(o.relu_width)
    elif o.target == "sum":
      y = lagged(x, o.lags).sum(axis=1)
    elif o.target == "adaptive":
      y = adaptive_target(x, tuple(o.adaptive_lags), o.depth)
    else:
      s = np.arange(o.length, dtype=np.float64)
      rho = np.maximum(s, 1.0) ** -o.heavy_exponent if o.target == "heavy_tailed" else np.exp(-o.light_rate * s)
      y = kernel_target(x, rho)
    return y.astype(np.float32)

  def weights(self) -> np.ndarray:
    """[length] float32: 1 on scored positions."""
    o = self.options
    weights = np.zeros(o.length, np.float32)
    weights[o.first_scored if o.scored == "all" else o.length - 1:] = 1.0
    return weights

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    o = self.options
    sizes = {"train": o.num_train, "validation": o.num_eval}
    weights = self.weights()

    def examples(split: str):
      for i in range(sizes[split]):
        x = np.random.default_rng([o.seed, SPLITS.index(split), i]).choice(np.array([-1, 1], np.int32), o.length)
        yield i, {"inputs": (x + 1) // 2, "targets": self.targets(x), "weights": weights}

    sequence = (o.length,)
    return TaskExamples(name=data_name(self.name, o),
                        features={"inputs": tensor(sequence), "targets": tensor(sequence, np.float32),
                                  "weights": tensor(sequence, np.float32)},
                        splits={split: (lambda split=split: examples(split)) for split in SPLITS},
                        data_dir=data_dir)
