"""Memorization (Kajitsuka & Sato, ICLR 2024; shared/papers/memorization.md): fit per-token labels of a finite set.

- `memorization`: N distinct sequences of i.i.d. uniform tokens with i.i.d. uniform per-token labels. Labels carry
  no pattern, so the only way to fit them is to memorize every (sequence, position) — a capacity probe. The paper
  reports *training* accuracy, so the validation split is the training set itself.
- `ner_conll2003`: the paper's real token-labelling data, read from the CoNLL-2003 column files a user has (one
  token per line, the word first and the NER tag last, a blank line between sentences, `-DOCSTART-` lines ignored).
  Words get ids by training-set frequency (0 = padding, 1 = unknown); the 9 IOB tags are the classes. Sentences
  longer than `length` are cut into pieces.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import TaskExamples, data_name, require_file, tensor
from zoo.data.tasks.registry import register

NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
PAD, UNKNOWN = 0, 1  # word ids; words start at 2
CONLL_FORMAT = "CoNLL-2003 columns (word ... NER tag per line, a blank line between sentences)"


def distinct_sequences(seed: int, count: int, length: int, vocab_size: int) -> np.ndarray:
  """[count, length] int32: distinct rows of i.i.d. uniform tokens (duplicates are redrawn)."""
  rng = np.random.default_rng([seed, 0])
  rows, seen = [], set()
  while len(rows) < count:
    row = rng.integers(0, vocab_size, length, dtype=np.int32)
    if row.tobytes() not in seen:
      seen.add(row.tobytes())
      rows.append(row)
  return np.stack(rows)


@register("memorization")
class Memorization(Task):
  family = "encoder"
  objective = "token_classification"

  @dataclasses.dataclass(frozen=True)
  class Options:
    num_sequences: int = 1024  # N
    length: int = 32  # n
    vocab_size: int = 64
    num_classes: int = 2
    seed: int = 0

    def __post_init__(self):
      for field in ("num_sequences", "length", "vocab_size", "num_classes"):
        check(getattr(self, field) >= 1, f"task 'memorization': {field} must be >= 1, got {getattr(self, field)}")
      check(self.length * math.log(self.vocab_size) >= math.log(self.num_sequences),
            f"task 'memorization': only {self.vocab_size}^{self.length} distinct sequences exist, fewer than "
            f"num_sequences ({self.num_sequences})")

  @property
  def length(self) -> int:
    return self.options.length

  def model_fields(self):
    o = self.options
    return {"vocab_size": o.vocab_size, "max_length": o.length, "head": "token", "num_classes": o.num_classes}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    o = self.options

    def examples():
      inputs = distinct_sequences(o.seed, o.num_sequences, o.length, o.vocab_size)
      labels = np.random.default_rng([o.seed, 1]).integers(0, o.num_classes, inputs.shape, dtype=np.int32)
      for i in range(o.num_sequences):
        yield i, {"inputs": inputs[i], "targets": labels[i]}

    sequence = tensor((o.length,))
    return TaskExamples(name=data_name(self.name, o), features={"inputs": sequence, "targets": sequence},
                        splits={"train": examples, "validation": examples}, data_dir=data_dir)


def read_conll(path: pathlib.Path) -> list[tuple[list[str], list[int]]]:
  """(words, tag ids) per sentence of a CoNLL-2003 file; a ValueError names the file and line of a malformed one."""
  sentences, words, tags = [], [], []
  for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    columns = line.split()
    if not columns or columns[0] == "-DOCSTART-":
      if words:
        sentences.append((words, tags))
      words, tags = [], []
      continue
    if len(columns) < 2 or columns[-1] not in NER_TAGS:
      raise ValueError(f"task 'ner_conll2003': {path}:{number}: expected {CONLL_FORMAT} with a tag in "
                       f"{', '.join(NER_TAGS)}; got {line!r}")
    words.append(columns[0])
    tags.append(NER_TAGS.index(columns[-1]))
  if words:
    sentences.append((words, tags))
  if not sentences:
    raise ValueError(f"task 'ner_conll2003': {path} holds no sentence; expected {CONLL_FORMAT}")
  return sentences


@register("ner_conll2003")
class NerConll2003(Task):
  family = "encoder"
  objective = "token_classification"
  variable_length = True

  @dataclasses.dataclass(frozen=True)
  class Options:
    conll_dir: str = ""  # the directory holding the CoNLL-2003 files
    train_file: str = "train.txt"
    validation_file: str = "valid.txt"
    length: int = 128  # longer sentences are cut into pieces of this many words
    max_vocab: int = 0  # keep the most frequent training words (0 = all); the rest map to "unknown"

    def __post_init__(self):
      check(bool(self.conll_dir), "task 'ner_conll2003': set conll_dir, the directory of the CoNLL-2003 files")
      check(self.length >= 1, f"task 'ner_conll2003': length must be >= 1, got {self.length}")
      check(self.max_vocab >= 0, f"task 'ner_conll2003': max_vocab must be >= 0, got {self.max_vocab}")

  @property
  def length(self) -> int:
    return self.options.length

  def files(self) -> dict[str, pathlib.Path]:
    root = pathlib.Path(self.options.conll_dir).expanduser()
    return {"train": require_file(self.name, root / self.options.train_file, CONLL_FORMAT),
            "validation": require_file(self.name, root / self.options.validation_file, CONLL_FORMAT)}

  @functools.cached_property
  def vocabulary(self) -> dict[str, int]:
    """Training words → ids 2, 3, ... by decreasing frequency (ties alphabetical)."""
    counts = collections.Counter(w for words, _ in read_conll(self.files()["train"]) for w in words)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[:self.options.max_vocab or None]
    return {word: i + 2 for i, word in enumerate(ranked)}

  def model_fields(self):
    return {"vocab_size": len(self.vocabulary) + 2, "max_length": self.length, "head": "token",
            "num_classes": len(NER_TAGS)}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    files, length, vocabulary = self.files(), self.length, self.vocabulary

    def examples(split: str):
      for i, (words, tags) in enumerate(read_conll(files[split])):
        ids = [vocabulary.get(w, UNKNOWN) for w in words]
        for start in range(0, len(ids), length):
          yield f"{i}:{start}", {"inputs": np.array(ids[start:start + length], np.int32),
                                 "targets": np.array(tags[start:start + length], np.int32)}

    sequence = tensor((None,))
    return TaskExamples(name=data_name(self.name, self.options, files.values()),
                        features={"inputs": sequence, "targets": sequence},
                        splits={split: (lambda split=split: examples(split)) for split in files},
                        data_dir=data_dir)
