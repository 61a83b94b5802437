"""Passkey retrieval (Mohtashami & Jaggi 2023), the standard long-context probe: a number hidden in filler, asked for
at the end.

An input of length n is filler with the key segment [KEY, d_1, ..., d_k] (k random decimal digits) inserted at
offset p = round(depth · (n − k − 1)), depth uniform in [0, 1] for training; the k answer tokens that follow must
output d_1 ... d_k (classes 0..9). The filler repeats a cycle of `filler_size` tokens, as the original repeats
"The grass is green. The sky is blue. ..." — it holds no digit, so the key is the only thing to retrieve, and
accuracy by length and by depth says how far and from where a model reads it. Tokens: 0 padding, digits 1..10,
KEY 11, the answer token 12, filler from 13.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zoo.config import check
from zoo.data.tasks.examples import Example
from zoo.data.tasks.length_generalisation import LengthTask, tape
from zoo.data.tasks.registry import register

DIGIT, KEY, ANSWER, FILLER = 1, 11, 12, 13  # the first token of each kind


def passkey(digits: np.ndarray, n: int, depth: float, filler_size: int) -> np.ndarray:
  """The input tokens [n]: the filler cycle with [KEY, digits + 1] at offset round(depth · (n − k − 1))."""
  k = digits.shape[0]
  offset = round(depth * (n - k - 1))
  filler = FILLER + np.arange(n - k - 1) % filler_size
  return np.concatenate([filler[:offset], [KEY], digits + DIGIT, filler[offset:]])


@register("passkey")
class Passkey(LengthTask):
  num_classes = 10
  depths = (0.0, 0.25, 0.5, 0.75, 1.0)  # the test grid; training draws any depth

  @dataclasses.dataclass(frozen=True)
  class Options(LengthTask.Options):
    min_length: int = 8
    digits: int = 5  # k
    filler_size: int = 8

    def __post_init__(self):
      super().__post_init__()
      for field in ("digits", "filler_size"):
        check(getattr(self, field) >= 1, f"task 'passkey': {field} must be >= 1, got {getattr(self, field)}")

  def __init__(self, options: Options):
    self.shortest = options.digits + 1  # the key segment alone
    super().__init__(options)

  @property
  def vocab_size(self) -> int:
    return FILLER + self.options.filler_size

  def output_length(self, n):
    return self.options.digits

  def sample(self, rng: np.random.Generator, n: int, depth: float | None = None) -> Example:
    """An example of input length n with the key at `depth` (None: uniform in [0, 1])."""
    digits = rng.integers(0, 10, self.options.digits)
    depth = rng.uniform() if depth is None else depth
    return tape(passkey(digits, n, depth, self.options.filler_size), ANSWER, digits)
