"""WikiText-103, enwik8 and text8 loaders on small files in the real formats: vocabularies, splits, rows, errors."""

import collections

import numpy as np
import pytest

import task_files
from zoo.data import make_dataset, prepare, tasks


def test_wikitext_words_eos_vocabulary_and_unknown_words(data_dir, tmp_path):
  task = tasks.build("lm_wikitext103", dict(task_files.wikitext103(tmp_path), length=16))
  vocabulary = task.vocabulary
  lines = (tmp_path / "wiki.train.tokens").read_text().splitlines()
  counts = collections.Counter(w for line in lines for w in line.split() + ["<eos>"])  # <eos> ends every line
  counts["<unk>"] += 0
  assert list(vocabulary) == sorted(counts, key=lambda w: (-counts[w], w)) and vocabulary == {
      w: i for i, w in enumerate(vocabulary)}
  assert "<unk>" in vocabulary and "zebra" not in vocabulary and "=" in vocabulary
  assert task.model_fields() == {"vocab_size": len(vocabulary), "max_length": 16}
  builder = prepare(task, data_dir)
  valid = builder.as_data_source(split="validation")
  # lines: heading, blank, then 8 × (paragraph of 40 words + "zebra", blank) → 4 + 8 × 41 words and 18 <eos>
  assert len(task.words("validation")) == 4 + 8 * 41 + 18
  stream = np.concatenate([valid[i]["inputs"] for i in range(len(valid))])  # rows in tfds's order
  assert len(valid) == -(-350 // 16) and stream.shape[0] == 350
  ids = np.bincount(stream, minlength=len(vocabulary))
  assert ids[vocabulary["<unk>"]] == 8 and ids[vocabulary["<eos>"]] == 18

@pytest.mark.parametrize("name, write", [("lm_enwik8", task_files.enwik8), ("lm_text8", task_files.text8)])
def test_character_corpora_split_at_the_end_and_cut_rows(name, write, data_dir, tmp_path):
  options = write(tmp_path)
  task = tasks.build(name, dict(options, length=64))
  builder = prepare(task, data_dir)
  raw = (tmp_path / name.removeprefix("lm_")).read_bytes()
  assert len(raw) == 4000
  decode = (lambda ids: bytes(ids)) if name == "lm_enwik8" else (lambda ids: bytes(b" abcdefghijklmnopqrstuvwxyz"[i]
                                                                                     for i in ids))
  for split, (begin, end) in {"train": (0, 3360), "validation": (3360, 3680), "test": (3680, 4000)}.items():
    source = builder.as_data_source(split=split)
    pieces = {decode(source[i]["inputs"]) for i in range(len(source))}
    expected = {raw[s:min(s + 64, end)] for s in range(begin, end, 64)}
    assert pieces == expected
  assert task.model_fields()["vocab_size"] == (256 if name == "lm_enwik8" else 27)
  batch = next(iter(make_dataset(task, builder.as_data_source(split="validation"), batch_size=4, seed=0,
                                 train=False)))
  assert batch["inputs"].shape == (4, 64) and batch["inputs"].dtype == np.int32 and batch["weights"].sum() > 0


def test_bad_files_are_named(tmp_path):
  options = task_files.text8(tmp_path)
  (tmp_path / "text8").write_bytes(b"hello World")
  with pytest.raises(ValueError, match=r"text8: expected only lower-case a-z and spaces, found byte 87 at offset 6"):
    prepare(tasks.build("lm_text8", dict(options, eval_bytes=1)), str(tmp_path / "tfds"))
  with pytest.raises(ValueError, match=r"has 11 bytes; it needs more than 2 × eval_bytes = 640"):
    prepare(tasks.build("lm_text8", options), str(tmp_path / "tfds2"))
  with pytest.raises(ValueError, match=r"wiki.train.tokens' is not a file; expected WikiText-103"):
    tasks.build("lm_wikitext103", dict(folder=str(tmp_path))).model_fields()
  with pytest.raises(ValueError, match="folder '/no/such' is not a directory"):
    tasks.build("lm_enwik8", dict(folder="/no/such"))
