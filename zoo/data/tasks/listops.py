"""ListOps (Nangia & Bowman 2018, as generated for the Long Range Arena; shared/papers/spe.md).

A sequence is a nested expression of the operators MIN, MAX, MED (median, rounded down) and SM (sum modulo 10) over
the digits 0–9, written with its brackets kept, e.g. `[MAX 2 9 [MIN 4 7 ] 0 ]`; the label is its value (10
classes). Long expressions need the model to track the nesting over hundreds of tokens.

The generator follows LRA's: a node at depth < `max_depth` (the root has depth 1) is an operator with probability
0.25 and otherwise a random digit; an operator takes 2–`max_args` arguments; trees are drawn until their token
count lies strictly between `min_length` and `max_length` (a tree is abandoned as soon as it is too long, which does
not change the distribution of the kept ones), and duplicates are dropped — across splits too. Tokens: 0 = padding,
the digits 1–10, the operators 11–14, `]` 15.

Each split has its own random stream (seed, split), so examples are a pure function of the options; validation is
drawn first, then test without validation's trees, then train without either's.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import TaskExamples, data_name, tensor
from zoo.data.tasks.registry import register

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
CLOSE = "]"
VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + OPERATORS + (CLOSE,)
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
OPERATOR_PROBABILITY = 0.25
SPLITS = ("validation", "test", "train")  # generation order: later splits exclude earlier splits' trees


class _TooLong(Exception):
  pass


def random_tree(rng: np.random.Generator, *, max_depth: int, max_args: int, max_length: int) -> list[str] | None:
  """The tokens of one random tree, or None once it reaches `max_length` tokens."""
  tokens: list[str] = []

  def grow(depth: int) -> None:
    if depth < max_depth and rng.random() < OPERATOR_PROBABILITY:
      tokens.append(OPERATORS[rng.integers(len(OPERATORS))])
      for _ in range(rng.integers(2, max_args + 1)):
        grow(depth + 1)
      tokens.append(CLOSE)
    else:
      tokens.append(str(rng.integers(10)))
    if len(tokens) >= max_length:
      raise _TooLong

  try:
    grow(1)
  except _TooLong:
    return None
  return tokens


def apply(operator: str, args: list[int]) -> int:
  if operator == "[MIN":
    return min(args)
  if operator == "[MAX":
    return max(args)
  if operator == "[MED":
    return int(np.median(args))  # LRA's int(np.median(...)): the mean of the middle pair rounded down
  return sum(args) % 10


def evaluate(tokens: list[str]) -> int:
  """The value of a tree given as tokens (a stack machine; one pass)."""
  stack: list[list] = [[]]
  for token in tokens:
    if token in OPERATORS:
      stack.append([token])
    elif token == CLOSE:
      operator, *args = stack.pop()
      stack[-1].append(apply(operator, args))
    else:
      stack[-1].append(int(token))
  return stack[0][0]


def distinct_trees(seed: int, split: str, count: int, exclude: set[bytes], *, min_length: int, max_length: int,
                   max_depth: int, max_args: int) -> Iterator[np.ndarray]:
  """`count` distinct token-id arrays [n] (min_length < n < max_length) whose digests are not in `exclude`; the
  digests of the yielded trees are added to `exclude`."""
  rng = np.random.default_rng([seed, SPLITS.index(split)])
  found = 0
  while found < count:
    tokens = random_tree(rng, max_depth=max_depth, max_args=max_args, max_length=max_length)
    if tokens is None or len(tokens) <= min_length:
      continue
    ids = np.array([TOKEN_ID[t] for t in tokens], np.int32)
    digest = hashlib.sha1(ids.tobytes()).digest()
    if digest in exclude:
      continue
    exclude.add(digest)
    found += 1
    yield ids


@register("listops")
class ListOps(Task):
  family = "encoder"
  objective = "sequence_classification"
  variable_length = True

  @dataclasses.dataclass(frozen=True)
  class Options:
    num_train: int = 96_000
    num_eval: int = 2_000
    num_test: int = 2_000
    min_length: int = 500  # kept trees have min_length < tokens < max_length (LRA: 500, 2000)
    max_length: int = 2_000  # also the padded row length
    max_depth: int = 10
    max_args: int = 10
    seed: int = 0

    def __post_init__(self):
      for field in ("num_train", "num_eval", "num_test", "max_depth"):
        check(getattr(self, field) >= 1, f"task 'listops': {field} must be >= 1, got {getattr(self, field)}")
      check(self.max_args >= 2, f"task 'listops': max_args must be >= 2, got {self.max_args}")
      check(0 <= self.min_length < self.max_length - 1,
            f"task 'listops': need 0 <= min_length < max_length - 1, got {self.min_length}, {self.max_length}")
      check(self.max_depth >= 2 or self.min_length < 1,
            "task 'listops': max_depth 1 allows only single digits; raise max_depth or set min_length 0")

  @property
  def length(self) -> int:
    return self.options.max_length

  def model_fields(self):
    return {"vocab_size": len(VOCAB), "max_length": self.length, "head": "sequence", "num_classes": 10}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    o = self.options
    sizes = {"validation": o.num_eval, "test": o.num_test, "train": o.num_train}
    shape = dict(min_length=o.min_length, max_length=o.max_length, max_depth=o.max_depth, max_args=o.max_args)
    def exclude_for(split: str) -> set[bytes]:
      """The digests of the splits generated before `split`, replayed (they are small: the evaluation splits)."""
      digests: set[bytes] = set()
      for earlier in SPLITS[:SPLITS.index(split)]:
        for _ in distinct_trees(o.seed, earlier, sizes[earlier], digests, **shape):
          pass
      return digests

    def examples(split: str):
      trees = distinct_trees(o.seed, split, sizes[split], exclude_for(split), **shape)
      for i, ids in enumerate(trees):
        yield i, {"inputs": ids, "targets": np.int32(evaluate([VOCAB[t] for t in ids]))}

    return TaskExamples(name=data_name(self.name, o), features={"inputs": tensor((None,)), "targets": tensor()},
                        splits={split: (lambda split=split: examples(split)) for split in SPLITS},
                        data_dir=data_dir)
