"""What the length-generalisation tasks share: train on short inputs, test on longer ones (Delétang et al. 2023).

An example of input length n is a tape the encoder reads whole: the task's n input tokens, then one "answer" token
per output symbol (Delétang et al.'s empty output tape). The token head's logits at the answer tokens are the
output; only they are scored (weight 1; every other position 0), so accuracy is the share of output symbols right,
the paper's per-sequence accuracy averaged over sequences. Token 0 is padding: a batch pads shorter tapes and the
model masks them out.

Training lengths are drawn uniformly from [min_length, max_length] (the paper's 1..40); `sample(rng, n)` makes an
example of any n, which is how `zoo.experiments.length_tasks` tests lengths the training never saw. Example i of a
split is drawn from a generator seeded by (seed, split, i), so the data set is a pure function of its options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import Example, TaskExamples, data_name, tensor

SPLITS = ("train", "validation")
PAD = 0


def tape(inputs: np.ndarray, answer_token: int, outputs: np.ndarray) -> Example:
  """The example for input tokens [n] and output classes [m]: inputs + m answer tokens, targets and weights [n + m]
  (targets 0 and weight 0 off the answer tokens)."""
  n, m = inputs.shape[0], outputs.shape[0]
  return {"inputs": np.concatenate([inputs, np.full(m, answer_token)]).astype(np.int32),
          "targets": np.concatenate([np.zeros(n, np.int32), outputs]).astype(np.int32),
          "weights": np.concatenate([np.zeros(n), np.ones(m)]).astype(np.float32)}


class LengthTask(Task):
  """Base of the tasks scored on answer tokens at lengths beyond training. Subclasses give the vocabulary, the
  classes, the output length and `sample`."""

  family = "encoder"
  objective = "token_classification"
  variable_length = True
  shortest: ClassVar[int] = 1  # the shortest input length the task defines
  vocab_size: ClassVar[int]  # token ids, padding (0) and the answer token included
  num_classes: ClassVar[int]
  depths: ClassVar[tuple[float, ...]] = ()  # passkey: where the key sits, a test axis of its own

  @dataclasses.dataclass(frozen=True)
  class Options:
    min_length: int = 1  # training input lengths are uniform in [min_length, max_length]
    max_length: int = 40
    num_train: int = 100_000
    num_eval: int = 1_024
    seed: int = 0

    def __post_init__(self):
      for field in ("min_length", "num_train", "num_eval"):
        check(getattr(self, field) >= 1, f"task: {field} must be >= 1, got {getattr(self, field)}")
      check(self.max_length >= self.min_length,
            f"task: max_length ({self.max_length}) must be >= min_length ({self.min_length})")

  def __init__(self, options: Options):
    check(options.min_length >= self.shortest,
          f"task {self.name!r}: min_length must be >= {self.shortest}, got {options.min_length}")
    super().__init__(options)

  def output_length(self, n: int) -> int:
    del n
    return 1

  def total_length(self, n: int) -> int:
    """Tokens of the tape of an input of length n."""
    return n + self.output_length(n)

  def sample(self, rng: np.random.Generator, n: int) -> Example:
    """An example of input length n."""
    raise NotImplementedError

  @property
  def length(self) -> int:
    return self.total_length(self.options.max_length)

  def model_fields(self):
    return {"vocab_size": self.vocab_size, "max_length": self.length, "head": "token",
            "num_classes": self.num_classes}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    o = self.options
    sizes = {"train": o.num_train, "validation": o.num_eval}

    def split_examples(split: str):
      def generate() -> Iterator[tuple[int, Example]]:
        for i in range(sizes[split]):
          rng = np.random.default_rng([o.seed, SPLITS.index(split), i])
          yield i, self.sample(rng, int(rng.integers(o.min_length, o.max_length + 1)))
      return generate

    sequence = tensor((None,))
    return TaskExamples(name=data_name(self.name, o),
                        features={"inputs": sequence, "targets": sequence, "weights": tensor((None,), np.float32)},
                        splits={split: split_examples(split) for split in SPLITS}, data_dir=data_dir)
