"""ListOps: labels equal an independent recursive evaluator, lengths and depth in range, no duplicates, seeds."""

import math
import statistics

import numpy as np
import pytest

from zoo.data import make_dataset, prepare, tasks
from zoo.data.tasks import listops

SMALL = dict(num_train=200, num_eval=40, num_test=40, min_length=10, max_length=60, max_depth=4, max_args=4)


@pytest.fixture(scope="module")
def small(data_dir):
  task = tasks.build("listops", SMALL)
  return task, prepare(task, data_dir)


def parse(tokens: list[str]) -> tuple[int, int]:
  """(value, depth) of a bracketed expression, recursively: written from the task definition, not the module."""

  def node(i: int) -> tuple[int, int, int]:  # value, depth, next index
    token = tokens[i]
    if token.isdigit():
      return int(token), 1, i + 1
    args, depth, i = [], 0, i + 1
    while tokens[i] != "]":
      value, d, i = node(i)
      args.append(value)
      depth = max(depth, d)
    assert 2 <= len(args) <= SMALL["max_args"]
    value = {"[MIN": min, "[MAX": max, "[SM": lambda a: sum(a) % 10,
             "[MED": lambda a: math.floor(statistics.median(a))}[token](args)
    return value, depth + 1, i + 1

  value, depth, end = node(0)
  assert end == len(tokens)
  return value, depth


def test_labels_equal_an_independent_evaluator_and_shapes_are_in_range(small):
  task, builder = small
  digests = set()
  for split, size in (("train", 200), ("validation", 40), ("test", 40)):
    source = builder.as_data_source(split=split)
    assert len(source) == size
    for i in range(size):
      ids = source[i]["inputs"]
      assert ids.dtype == np.int32 and 10 < ids.shape[0] < 60 and ids.min() >= 1 and ids.max() < 16
      value, depth = parse([listops.VOCAB[t] for t in ids])
      assert source[i]["targets"] == value and depth <= SMALL["max_depth"]
      digests.add(bytes(ids))
  assert len(digests) == 280  # distinct within and across splits
  labels = [int(builder.as_data_source(split="train")[i]["targets"]) for i in range(200)]
  assert len(set(labels)) >= 6  # all operators and many values occur


def test_median_rounds_down_and_brackets_are_tokens():
  assert listops.evaluate("[MED 1 2 ]".split()) == 1 and listops.evaluate("[MED 3 9 4 ]".split()) == 4
  assert listops.evaluate("[SM 9 [MAX 2 7 ] ]".split()) == 6
  assert listops.TOKEN_ID["]"] == 15 and listops.TOKEN_ID["<pad>"] == 0 and len(listops.VOCAB) == 16


def test_batches_are_padded_with_a_mask(small):
  task, builder = small
  batch = next(iter(make_dataset(task, builder.as_data_source(split="validation"), batch_size=8, seed=0,
                                 train=False)))
  assert batch["inputs"].shape == (8, 60) and batch["targets"].shape == (8,) and batch["mask"].shape == (8, 60)
  source = builder.as_data_source(split="validation")
  for row in range(8):
    n = source[row]["inputs"].shape[0]
    assert batch["mask"][row].sum() == n and not batch["inputs"][row, n:].any()
  assert task.model_fields() == {"vocab_size": 16, "max_length": 60, "head": "sequence", "num_classes": 10}


def test_same_seed_same_trees_other_seed_other_trees(small, tmp_path):
  _, builder = small
  again = prepare(tasks.build("listops", SMALL), str(tmp_path / "a")).as_data_source(split="test")
  other = prepare(tasks.build("listops", dict(SMALL, seed=1)), str(tmp_path / "b")).as_data_source(split="test")
  np.testing.assert_array_equal(again[3]["inputs"], builder.as_data_source(split="test")[3]["inputs"])
  assert not np.array_equal(other[3]["inputs"], again[3]["inputs"])


def test_bad_options_are_named():
  with pytest.raises(ValueError, match="min_length < max_length - 1"):
    tasks.build("listops", dict(min_length=100, max_length=50))
  with pytest.raises(ValueError, match="max_args must be >= 2"):
    tasks.build("listops", dict(max_args=1))
