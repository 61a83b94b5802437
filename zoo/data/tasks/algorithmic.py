"""Five algorithmic tasks of Delétang et al. (ICLR 2023, "Neural Networks and the Chomsky Hierarchy"), as in the
authors' code (github.com/google-deepmind/neural_networks_chomsky_hierarchy, tasks/):

- parity_check (regular): a binary string → 1 if it holds an odd number of 1s, else 0. One output.
- reverse_string (deterministic context-free): a binary string → the string reversed. n outputs.
- duplicate_string (context-sensitive): a binary string w → ww. 2n outputs.
- bucket_sort (context-sensitive): a string over {0..alphabet_size−1} (5 in the paper) → the string sorted. n outputs.
- missing_duplicate (context-sensitive): a binary string w of length n // 2 written twice, one symbol of ww replaced
  by the placeholder 2 (and, for odd n, the empty symbol 3 appended) → the hidden symbol. One output.

Each task is a pure function from the input symbols to the output classes (`targets`); `sample` draws the input
symbols as the paper does and writes the tape (length_generalisation.py). Symbol s is token s + 1 (0 is padding)
and the answer token follows the alphabet.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zoo.config import check
from zoo.data.tasks.examples import Example
from zoo.data.tasks.length_generalisation import LengthTask, tape
from zoo.data.tasks.registry import register

PLACEHOLDER, EMPTY = 2, 3  # missing_duplicate's hidden symbol and odd-length filler


def parity_check(symbols: np.ndarray) -> np.ndarray:
  return np.array([int(symbols.sum()) % 2])


def reverse_string(symbols: np.ndarray) -> np.ndarray:
  return symbols[::-1]


def duplicate_string(symbols: np.ndarray) -> np.ndarray:
  return np.concatenate([symbols, symbols])


def bucket_sort(symbols: np.ndarray) -> np.ndarray:
  return np.sort(symbols)


def missing_duplicate(symbols: np.ndarray) -> np.ndarray:
  """The symbol hidden by the placeholder: the one at the same place of the other copy."""
  half = symbols.shape[0] // 2
  hidden = int(np.flatnonzero(symbols == PLACEHOLDER)[0])
  return np.array([symbols[hidden + half if hidden < half else hidden - half]])


class _Algorithmic(LengthTask):
  """An input alphabet of `alphabet` symbols (tokens 1..alphabet), the answer token alphabet + 1."""

  alphabet = 2
  num_classes = 2

  @property
  def vocab_size(self) -> int:
    return self.alphabet + 2

  def targets(self, symbols: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
    """The input symbols [n]: i.i.d. uniform over the alphabet."""
    return rng.integers(0, self.alphabet, n)

  def sample(self, rng: np.random.Generator, n: int) -> Example:
    symbols = self.draw(rng, n)
    return tape(symbols + 1, self.alphabet + 1, self.targets(symbols))


@register("parity_check")
class ParityCheck(_Algorithmic):
  def targets(self, symbols):
    return parity_check(symbols)


@register("reverse_string")
class ReverseString(_Algorithmic):
  def output_length(self, n):
    return n

  def targets(self, symbols):
    return reverse_string(symbols)


@register("duplicate_string")
class DuplicateString(_Algorithmic):
  def output_length(self, n):
    return 2 * n

  def targets(self, symbols):
    return duplicate_string(symbols)


@register("bucket_sort")
class BucketSort(_Algorithmic):
  @dataclasses.dataclass(frozen=True)
  class Options(LengthTask.Options):
    alphabet_size: int = 5

    def __post_init__(self):
      super().__post_init__()
      check(self.alphabet_size >= 2, f"task 'bucket_sort': alphabet_size must be >= 2, got {self.alphabet_size}")

  @property
  def alphabet(self):
    return self.options.alphabet_size

  @property
  def num_classes(self):
    return self.options.alphabet_size

  def output_length(self, n):
    return n

  def targets(self, symbols):
    return bucket_sort(symbols)


@register("missing_duplicate")
class MissingDuplicate(_Algorithmic):
  shortest = 2  # the paper sets n = 1 apart (no copy to read); it is not part of the task
  alphabet = 4  # 0, 1, the placeholder, the empty symbol

  @dataclasses.dataclass(frozen=True)
  class Options(LengthTask.Options):
    min_length: int = 2

  def draw(self, rng, n):
    copy = rng.integers(0, 2, n // 2)
    symbols = np.concatenate([copy, copy, np.full(n % 2, EMPTY)])
    symbols[rng.integers(0, 2 * (n // 2))] = PLACEHOLDER
    return symbols

  def targets(self, symbols):
    return missing_duplicate(symbols)
