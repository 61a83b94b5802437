"""Memorization: distinct sequences, label ranges, train = validation, seeds, the per-token ceiling of the experiment;
the CoNLL-2003 loader on a small file."""

import collections

import numpy as np
import pytest

import task_files
from zoo.data import make_dataset, prepare, tasks
from zoo.data.tasks.memorization import NER_TAGS
from zoo.experiments.memorization import per_token_ceiling

SMALL = dict(num_sequences=64, length=6, vocab_size=2, num_classes=3)


def test_sequences_are_distinct_with_labels_in_range_and_validation_is_the_training_set(data_dir):
  builder = prepare(tasks.build("memorization", SMALL), data_dir)
  train, valid = builder.as_data_source(split="train"), builder.as_data_source(split="validation")
  assert len(train) == len(valid) == 64  # all 2^6 binary sequences: none repeated
  rows = {bytes(train[i]["inputs"]) for i in range(64)}
  assert len(rows) == 64 and rows == {bytes(valid[i]["inputs"]) for i in range(64)}
  labels = np.stack([train[i]["targets"] for i in range(64)])
  assert labels.shape == (64, 6) and labels.min() == 0 and labels.max() == 2
  assert np.stack([train[i]["inputs"] for i in range(64)]).max() == 1


def test_same_seed_same_data_other_seed_other_labels(data_dir, tmp_path):
  options = dict(SMALL, vocab_size=50)
  a = prepare(tasks.build("memorization", options), data_dir).as_data_source(split="train")
  b = prepare(tasks.build("memorization", options), str(tmp_path)).as_data_source(split="train")
  c = prepare(tasks.build("memorization", dict(options, seed=3)), data_dir).as_data_source(split="train")
  np.testing.assert_array_equal(a[9]["targets"], b[9]["targets"])
  assert not np.array_equal(a[9]["inputs"], c[9]["inputs"])


def test_too_many_sequences_for_the_vocabulary_is_an_error():
  with pytest.raises(ValueError, match=r"only 2\^6 distinct sequences exist, fewer than num_sequences \(65\)"):
    tasks.build("memorization", dict(SMALL, num_sequences=65))


def test_conll_loader_reads_words_and_tags_and_pads_sentences(data_dir, tmp_path):
  task = tasks.build("ner_conll2003", dict(task_files.conll2003(tmp_path), length=8))
  vocabulary = task.vocabulary
  assert vocabulary["EU"] >= 2 and "-DOCSTART-" not in vocabulary and "CRICKET" not in vocabulary
  assert task.model_fields() == {"vocab_size": len(vocabulary) + 2, "max_length": 8, "head": "token",
                                 "num_classes": 9}
  builder = prepare(task, data_dir)
  train = builder.as_data_source(split="train")
  assert len(train) == 12
  first = next(train[i] for i in range(12) if train[i]["inputs"][0] == vocabulary["EU"])
  np.testing.assert_array_equal(first["inputs"], [vocabulary[w] for w in "EU rejects German call .".split()])
  np.testing.assert_array_equal(first["targets"], [NER_TAGS.index(t) for t in "B-ORG O B-MISC O O".split()])
  valid = builder.as_data_source(split="validation")
  assert len(valid) == 16  # 11-word sentences cut into 8 + 3
  assert sorted(valid[i]["inputs"].shape[0] for i in range(2)) in ([3, 8], [8, 8], [3, 3])
  assert all((valid[i]["inputs"] == 1).sum() >= 1 for i in range(16))  # unseen words are "unknown" (id 1)
  batch = next(iter(make_dataset(task, valid, batch_size=4, seed=0, train=False)))
  assert batch["inputs"].shape == batch["targets"].shape == batch["weights"].shape == (4, 8)
  np.testing.assert_array_equal(batch["weights"], batch["mask"])
  assert batch["mask"].sum() == sum(valid[i]["inputs"].shape[0] for i in range(4))


def test_conll_loader_names_the_bad_file_and_line(tmp_path):
  (tmp_path / "train.txt").write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP X-BAD\n")
  (tmp_path / "valid.txt").write_text("")
  task = tasks.build("ner_conll2003", dict(conll_dir=str(tmp_path)))
  with pytest.raises(ValueError, match=r"train.txt:2: expected CoNLL-2003 columns.*got 'rejects VBZ B-VP X-BAD'"):
    task.model_fields()
  with pytest.raises(ValueError, match=r"nope.txt' is not a file; expected CoNLL-2003 columns"):
    tasks.build("ner_conll2003", dict(conll_dir=str(tmp_path), validation_file="nope.txt")).files()


def test_per_token_ceiling_is_the_majority_label_of_each_position_and_token_in_the_data(data_dir):
  """The memorization experiment's FFN-only bound, recounted in plain Python from the prepared training split."""
  train = prepare(tasks.build("memorization", SMALL), data_dir).as_data_source(split="train")
  counts = collections.defaultdict(collections.Counter)
  for i in range(len(train)):
    for t, (token, label) in enumerate(zip(train[i]["inputs"], train[i]["targets"])):
      counts[t, int(token)][int(label)] += 1
  want = sum(max(c.values()) for c in counts.values()) / (len(train) * SMALL["length"])
  assert per_token_ceiling(SMALL["num_sequences"], SMALL["length"], SMALL["vocab_size"], seed=0,
                           num_classes=SMALL["num_classes"]) == pytest.approx(want, abs=1e-12)
  assert 1 / 3 < want < 1
