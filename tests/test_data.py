"""Tasks and the input pipeline: targets by definition, determinism, packing, process shards, exact resume."""

import numpy as np
import pytest

from zoo.data import make_dataset, prepare, tasks
from zoo.train.checkpoint import Checkpointer

SMALL = dict(vocab_size=10, length=16, num_train=256, num_eval=32)


@pytest.fixture(scope="module")
def pi(data_dir):
  task = tasks.build("position_identification", SMALL)
  return task, prepare(task, data_dir)


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
  """A byte corpus of 25 small text files of known content (files 0 and 20 are the validation split)."""
  root = tmp_path_factory.mktemp("text")
  for k in range(25):
    (root / f"f{k:02d}.txt").write_bytes(bytes([65 + k % 26]) * (5 + 3 * k))
  task = tasks.build("byte_lm", dict(text_dir=str(root), pattern="*.txt", length=16))
  return task, prepare(task, data_dir), root


def test_position_identification_and_even_token_targets(data_dir):
  pi_task = tasks.build("position_identification", SMALL)
  etp_task = tasks.build("even_token_prediction", SMALL)
  for task in (pi_task, etp_task):
    source = prepare(task, data_dir).as_data_source(split="train")
    assert len(source) == SMALL["num_train"]
    for i in (0, 7):
      x, y = source[i]["inputs"], source[i]["targets"]
      assert x.shape == (16,) and x.min() >= 0 and x.max() < 10
      for position in range(16):  # the paper's definitions, position by position
        if task.name == "position_identification":
          expected = position
        else:
          expected = x[2 * position + 1] if position < 8 else 10
        assert y[position] == expected
  assert etp_task.model_fields()["num_classes"] == 11 and pi_task.model_fields()["num_classes"] == 16


def test_examples_are_a_pure_function_of_the_options(pi, tmp_path):
  task, builder = pi
  again = prepare(tasks.build("position_identification", SMALL), str(tmp_path))
  a, b = builder.as_data_source(split="validation"), again.as_data_source(split="validation")
  np.testing.assert_array_equal(a[5]["inputs"], b[5]["inputs"])
  assert not np.array_equal(a[5]["inputs"], builder.as_data_source(split="train")[5]["inputs"])


def test_processes_read_disjoint_rows_of_the_same_global_batches(pi):
  task, builder = pi
  source = builder.as_data_source(split="train")
  whole = iter(make_dataset(task, source, batch_size=8, seed=1, train=True))
  shares = [iter(make_dataset(task, source, batch_size=8, seed=1, train=True, process_index=p, process_count=2))
            for p in range(2)]
  for _ in range(3):
    np.testing.assert_array_equal(np.concatenate([next(s)["inputs"] for s in shares]), next(whole)["inputs"])


def test_process_shards_are_disjoint_and_cover_the_split(pi):
  task, builder = pi
  source = builder.as_data_source(split="validation")
  rows = []
  for process in range(2):
    for batch in make_dataset(task, source, batch_size=8, seed=0, train=False, process_index=process,
                              process_count=2):
      rows.extend(map(bytes, batch["inputs"]))
  assert sorted(rows) == sorted(bytes(source[i]["inputs"]) for i in range(len(source)))


def test_training_stream_reshuffles_each_epoch(pi):
  task, builder = pi
  batches = iter(make_dataset(task, builder.as_data_source(split="train"), batch_size=256, seed=0, train=True))
  first, second = next(batches)["inputs"], next(batches)["inputs"]
  assert sorted(map(bytes, first)) == sorted(map(bytes, second))  # same examples
  assert not np.array_equal(first, second)  # another order


def test_packing_keeps_documents_whole_and_scores_only_inside_them(corpus):
  task, builder, root = corpus
  documents = {bytes(builder.as_data_source(split="train")[i]["inputs"].astype(np.uint8))
               for i in range(len(builder.as_data_source(split="train")))}
  batch = next(iter(make_dataset(task, builder.as_data_source(split="train"), batch_size=4, seed=0, train=True)))
  for row in range(4):
    segments, tokens = batch["segment_ids"][row], batch["inputs"][row]
    for segment in set(segments[segments > 0].tolist()):
      where = np.flatnonzero(segments == segment)
      assert np.array_equal(batch["positions"][row][where], np.arange(where.size))
      assert bytes(tokens[where].astype(np.uint8)) in documents
      # next-token targets inside the document, nothing scored at its last token
      np.testing.assert_array_equal(batch["targets"][row][where[:-1]], tokens[where[1:]])
      assert batch["weights"][row][where[:-1]].all() and batch["weights"][row][where[-1]] == 0
    assert not batch["weights"][row][segments == 0].any()


def test_byte_lm_validation_split_is_every_twentieth_file(corpus):
  task, builder, root = corpus
  valid = builder.as_data_source(split="validation")
  contents = {bytes(valid[i]["inputs"].astype(np.uint8)) for i in range(len(valid))}
  # files 0 and 20 (sorted): 5 and 65 bytes, the latter cut into 16-byte documents
  assert contents == {b"A" * 5, b"U" * 16, b"U" * 1}


def test_byte_lm_rejects_a_missing_directory():
  with pytest.raises(ValueError, match="text_dir '/no/such/dir' is not a directory"):
    tasks.build("byte_lm", dict(text_dir="/no/such/dir"))


def test_unknown_task_and_option_name_the_valid_ones():
  # every registered task is listed, in sorted order
  with pytest.raises(ValueError, match="unknown task 'pi'; valid choices: bucket_sort, byte_lm, duplicate_string, "
                                       "even_token_prediction, .*position_identification"):
    tasks.build("pi")
  with pytest.raises(ValueError, match="unknown option.*'vocab'.*valid options: vocab_size"):
    tasks.build("position_identification", dict(vocab=3))


@pytest.mark.parametrize("packed", [False, True])
def test_pipeline_resumes_at_exactly_the_next_batch_through_a_checkpoint(pi, corpus, tmp_path, packed):
  task, builder = corpus[:2] if packed else pi
  source = builder.as_data_source(split="train")
  make = lambda: iter(make_dataset(task, source, batch_size=4, seed=3, train=True))
  uninterrupted = make()
  expected = [next(uninterrupted) for _ in range(7)]
  interrupted = make()
  for _ in range(4):
    next(interrupted)
  checkpointer = Checkpointer(str(tmp_path / "ckpt"), max_to_keep=1)
  checkpointer.save(4, {"step": np.arange(4)}, interrupted)
  next(interrupted)  # the iterator moves on while the save runs; the checkpoint holds the position at the save
  checkpointer.wait()
  resumed = make()
  checkpointer.restore(4, {"step": np.zeros(4, np.int64)}, resumed)
  checkpointer.close()
  for want in expected[4:]:
    got = next(resumed)
    for name in want:
      np.testing.assert_array_equal(got[name], want[name])
