"""A byte-level language-modelling corpus built from local text files.

The default corpus is the Python standard library's own source, which exists on every machine that runs zoo, so
the LM configs train without a download; `text_dir` and `pattern` point it at any directory of text. Each file is
cut into documents of at most `length` bytes; the pipeline packs documents into rows (segment ids and positions
restart per document) or pads one per row. Every 20th file (in sorted order) goes to the validation split.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sysconfig
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import TaskExamples, data_name, tensor
from zoo.data.tasks.registry import register

VALIDATION_EVERY = 20  # file k (sorted) is a validation file when k % 20 == 0


def corpus_files(text_dir: str, pattern: str, max_files: int) -> list[pathlib.Path]:
  """The first `max_files` files under `text_dir` matching `pattern`, in sorted order; an error if none match."""
  root = pathlib.Path(text_dir).expanduser()
  files = sorted(p for p in root.rglob(pattern) if p.is_file())[:max_files]
  if not files:
    raise ValueError(f"task 'byte_lm': no file under {str(root)!r} matches pattern {pattern!r}")
  return files


def byte_documents(data: bytes, length: int) -> Iterator[np.ndarray]:
  """`data` cut into consecutive documents of at most `length` bytes, as int32 token arrays."""
  tokens = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
  for start in range(0, tokens.shape[0], length):
    yield tokens[start:start + length]


@register("byte_lm")
class ByteLM(Task):
  family = "decoder"
  objective = "next_token"
  variable_length = True
  alphabet = bytes(range(256))

  @dataclasses.dataclass(frozen=True)
  class Options:
    text_dir: str = ""  # "" = the Python standard library's source directory
    pattern: str = "*.py"
    max_files: int = 200
    length: int = 128
    pack: bool = True  # pack documents into rows (segment ids); False pads one document per row

    def __post_init__(self):
      check(self.max_files >= 1, f"task 'byte_lm': max_files must be >= 1, got {self.max_files}")
      check(self.length >= 2, f"task 'byte_lm': length must be >= 2, got {self.length}")
      check(not self.text_dir or os.path.isdir(os.path.expanduser(self.text_dir)),
            f"task 'byte_lm': text_dir {self.text_dir!r} is not a directory")

  @property
  def length(self) -> int:
    return self.options.length

  @property
  def pack(self) -> bool:
    return self.options.pack

  def model_fields(self):
    return {"vocab_size": 256, "max_length": self.options.length}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    o = self.options
    files = corpus_files(o.text_dir or sysconfig.get_paths()["stdlib"], o.pattern, o.max_files)
    validation = [p for k, p in enumerate(files) if k % VALIDATION_EVERY == 0]
    train = [p for k, p in enumerate(files) if k % VALIDATION_EVERY != 0] or validation

    def documents(paths: list[pathlib.Path]):
      def generate():
        for path in paths:
          for j, doc in enumerate(byte_documents(path.read_bytes(), o.length)):
            yield f"{path}:{j}", {"inputs": doc}
      return generate

    return TaskExamples(name=data_name(self.name, o, files), features={"inputs": tensor((None,))},
                        splits={"train": documents(train), "validation": documents(validation)}, data_dir=data_dir)
