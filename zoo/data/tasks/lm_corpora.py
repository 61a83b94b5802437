"""The standard language-modelling corpora, read from the raw files a user has: WikiText-103, enwik8 and text8.

- `lm_wikitext103`: word level. `wiki.{train,valid,test}.tokens` (already tokenized, `<unk>` for rare words); each
  line becomes its words plus `<eos>` (as in Transformer-XL); the vocabulary is every training word, most frequent
  first (ties alphabetical); other words map to `<unk>`.
- `lm_enwik8`: byte level (vocabulary 256) over the first 10^8 bytes of English Wikipedia XML; the last
  2 × `eval_bytes` bytes (5M each by default, the standard 90M / 5M / 5M) are validation and test.
- `lm_text8`: character level over text8 (lower-case a–z and space only; vocabulary 27: space = 0, a–z = 1–26),
  split like enwik8.

The token stream of each split is cut into consecutive rows of `length` tokens (the last one shorter); the pipeline
pads it, and next-token targets stay inside a row.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import TaskExamples, data_name, require_file, tensor
from zoo.data.tasks.registry import register

WIKITEXT_FILES = {"train": "wiki.train.tokens", "validation": "wiki.valid.tokens", "test": "wiki.test.tokens"}
WIKITEXT_FORMAT = "WikiText-103's wiki.{train,valid,test}.tokens (space-separated words, one paragraph per line)"
TEXT8_ALPHABET = b" abcdefghijklmnopqrstuvwxyz"


def rows(tokens: np.ndarray, length: int):
  """(i, {"inputs": tokens [≤ length]}) for consecutive rows of `tokens`."""
  for i, start in enumerate(range(0, tokens.shape[0], length)):
    yield i, {"inputs": tokens[start:start + length]}


class _LMTask(Task):
  family = "decoder"
  objective = "next_token"
  variable_length = True  # the last row of a split is shorter; rows are padded, never packed

  def __init__(self, options):
    check(bool(options.folder) and pathlib.Path(options.folder).expanduser().is_dir(),
          f"task {self.name!r}: folder {options.folder!r} is not a directory")
    check(options.length >= 2, f"task {self.name!r}: length must be >= 2, got {options.length}")
    super().__init__(options)

  @property
  def length(self) -> int:
    return self.options.length

  def path(self, name: str, expected: str) -> pathlib.Path:
    return require_file(self.name, pathlib.Path(self.options.folder).expanduser() / name, expected)


@register("lm_wikitext103")
class WikiText103(_LMTask):
  @dataclasses.dataclass(frozen=True)
  class Options:
    folder: str = ""  # the wikitext-103 directory
    length: int = 256  # words per row

  def words(self, split: str) -> list[str]:
    """The split's words, `<eos>` after every line."""
    text = self.path(WIKITEXT_FILES[split], WIKITEXT_FORMAT).read_text(encoding="utf-8")
    return [word for line in text.splitlines() for word in line.split() + ["<eos>"]]

  @functools.cached_property
  def vocabulary(self) -> dict[str, int]:
    counts = collections.Counter(self.words("train"))
    counts.setdefault("<unk>", 0)
    return {word: i for i, word in enumerate(sorted(counts, key=lambda w: (-counts[w], w)))}

  def model_fields(self):
    return {"vocab_size": len(self.vocabulary), "max_length": self.length}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    vocabulary = self.vocabulary
    files = [self.path(name, WIKITEXT_FORMAT) for name in WIKITEXT_FILES.values()]

    def examples(split: str):
      unknown = vocabulary["<unk>"]
      ids = np.array([vocabulary.get(w, unknown) for w in self.words(split)], np.int32)
      return rows(ids, self.length)

    return TaskExamples(name=data_name(self.name, self.options, files), features={"inputs": tensor((None,))},
                        splits={split: (lambda split=split: examples(split)) for split in WIKITEXT_FILES},
                        data_dir=data_dir)


class _CharacterCorpus(_LMTask):
  """One raw file, split at the end into validation and test parts of `eval_bytes` each."""

  FILE = ""  # the corpus's usual file name
  VOCAB = 0

  @dataclasses.dataclass(frozen=True)
  class Options:
    folder: str = ""
    file: str = ""  # "" = the corpus's usual name (enwik8, text8)
    length: int = 512
    eval_bytes: int = 5_000_000  # validation and test each

  def __init__(self, options):
    super().__init__(options)
    check(options.eval_bytes >= 1, f"task {self.name!r}: eval_bytes must be >= 1, got {options.eval_bytes}")

  def tokens(self, data: bytes, path: pathlib.Path) -> np.ndarray:
    raise NotImplementedError

  def model_fields(self):
    return {"vocab_size": self.VOCAB, "max_length": self.length}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    o = self.options
    path = self.path(o.file or self.FILE, f"the raw {self.FILE} file")

    def examples(split: str):
      data = path.read_bytes()
      check(len(data) > 2 * o.eval_bytes, f"task {self.name!r}: {path} has {len(data)} bytes; it needs more than "
                                          f"2 × eval_bytes = {2 * o.eval_bytes} (validation and test)")
      train_end, valid_end = len(data) - 2 * o.eval_bytes, len(data) - o.eval_bytes
      begin, end = {"train": (0, train_end), "validation": (train_end, valid_end),
                    "test": (valid_end, len(data))}[split]
      return rows(self.tokens(data[begin:end], path), o.length)

    return TaskExamples(name=data_name(self.name, o, [path]), features={"inputs": tensor((None,), np.uint8)},
                        splits={split: (lambda split=split: examples(split)) for split in ("train", "validation",
                                                                                            "test")},
                        data_dir=data_dir)


@register("lm_enwik8")
class Enwik8(_CharacterCorpus):
  FILE, VOCAB = "enwik8", 256
  alphabet = bytes(range(256))

  def tokens(self, data: bytes, path: pathlib.Path) -> np.ndarray:
    return np.frombuffer(data, np.uint8)


@register("lm_text8")
class Text8(_CharacterCorpus):
  FILE, VOCAB = "text8", len(TEXT8_ALPHABET)
  alphabet = TEXT8_ALPHABET

  def tokens(self, data: bytes, path: pathlib.Path) -> np.ndarray:
    """Space → 0, a–z → 1–26; any other byte is an error."""
    table = np.full(256, 255, np.uint8)
    table[np.frombuffer(TEXT8_ALPHABET, np.uint8)] = np.arange(len(TEXT8_ALPHABET), dtype=np.uint8)
    ids = table[np.frombuffer(data, np.uint8)]
    bad = np.flatnonzero(ids == 255)
    if bad.size:
      raise ValueError(f"task 'lm_text8': {path}: expected only lower-case a-z and spaces, found byte "
                       f"{data[bad[0]]} at offset {bad[0]} of the split")
    return ids
