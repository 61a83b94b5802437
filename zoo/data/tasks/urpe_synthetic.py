"""The URPE paper's synthetic tasks (Luo et al. 2022, shared/papers/urpe.md), as tfds builders.

Both take i.i.d. uniform tokens over a vocabulary of `vocab_size` and ask for an output at every position that an
RPE-only Transformer cannot produce, because its attention rows are convex combinations that cannot see absolute
position:

- Position Identification (PI): the target at position i is i. Chance accuracy is 1 / length.
- Even Token Prediction (ETP): output position i < length/2 must emit x[2i + 1] (0-indexed, the paper's even
  tokens in 1-indexed terms); positions ≥ length/2 emit a filler class (`vocab_size`). A position-blind model gets
  about 0.5.

Example i of a split is drawn from a generator seeded by (seed, split, i), so the data set is a pure function of
its options, all of which the data set's name digests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import TaskExamples, data_name, tensor
from zoo.data.tasks.registry import register

SPLITS = ("train", "validation")


def position_identification(tokens: np.ndarray) -> np.ndarray:
  """PI targets for `tokens` [length]: the position index."""
  return np.arange(tokens.shape[0], dtype=np.int32)


def even_token_prediction(tokens: np.ndarray, filler: int) -> np.ndarray:
  """ETP targets for `tokens` [length] (even length): x[2i+1] for i < length/2, then `filler`."""
  half = tokens.shape[0] // 2
  return np.concatenate([tokens[1::2][:half], np.full(tokens.shape[0] - half, filler, tokens.dtype)])


class _UrpeSyntheticTask(Task):
  family = "encoder"
  objective = "token_classification"

  @dataclasses.dataclass(frozen=True)
  class Options:
    vocab_size: int = 100
    length: int = 64
    num_train: int = 65_536
    num_eval: int = 1_024
    seed: int = 0

    def __post_init__(self):
      for field in ("vocab_size", "length", "num_train", "num_eval"):
        check(getattr(self, field) >= 1, f"task: {field} must be >= 1, got {getattr(self, field)}")

  @property
  def length(self) -> int:
    return self.options.length

  def targets_fn(self) -> Callable[[np.ndarray], np.ndarray]:
    raise NotImplementedError

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    o = self.options
    make_targets = self.targets_fn()
    sizes = {"train": o.num_train, "validation": o.num_eval}

    def split_examples(split: str):
      def generate() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for i in range(sizes[split]):
          rng = np.random.default_rng([o.seed, SPLITS.index(split), i])
          tokens = rng.integers(0, o.vocab_size, o.length, dtype=np.int32)
          yield i, {"inputs": tokens, "targets": make_targets(tokens)}
      return generate

    sequence = tensor((o.length,))
    return TaskExamples(name=data_name(self.name, o), features={"inputs": sequence, "targets": sequence},
                        splits={split: split_examples(split) for split in SPLITS}, data_dir=data_dir)


@register("position_identification")
class PositionIdentification(_UrpeSyntheticTask):
  def targets_fn(self):
    return position_identification

  def model_fields(self):
    o = self.options
    return {"vocab_size": o.vocab_size, "max_length": o.length, "head": "token", "num_classes": o.length}


@register("even_token_prediction")
class EvenTokenPrediction(_UrpeSyntheticTask):
  def __init__(self, options):
    check(options.length % 2 == 0, f"task 'even_token_prediction': length must be even, got {options.length}")
    super().__init__(options)

  def targets_fn(self):
    filler = self.options.vocab_size
    return lambda tokens: even_token_prediction(tokens, filler)

  def model_fields(self):
    o = self.options
    return {"vocab_size": o.vocab_size, "max_length": o.length, "head": "token", "num_classes": o.vocab_size + 1}
