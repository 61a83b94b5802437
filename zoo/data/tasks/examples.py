"""One tfds builder for every generated or loaded task: a dict of split → example generator, and a pinned name.

Tasks differ in how they make examples, not in how those are written, so each task module supplies its features
and one generator function per split, and this builder writes them as array_record shards. The config name is the
task name plus a digest of everything that changes the data (options, and for loaders the files' paths, sizes and
modification times), so a changed option or an edited file never silently reuses stale data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

Example = dict[str, Any]


def data_name(task: str, options: Any, files: Iterable[pathlib.Path] = ()) -> str:
  """`task-<digest>`: the digest covers every option field and each file's path, size and modification time."""
  pinned = [repr(sorted(dataclasses.asdict(options).items()))]
  pinned += [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
  return f"{task}-{hashlib.sha1(chr(10).join(pinned).encode()).hexdigest()[:16]}"


def require_file(task: str, path: pathlib.Path, expected: str) -> pathlib.Path:
  """`path` if it is a file; otherwise a ValueError naming the task, the path and the expected format."""
  if not path.is_file():
    raise ValueError(f"task {task!r}: {str(path)!r} is not a file; expected {expected}")
  return path


def tensor(shape: tuple[int | None, ...] = (), dtype: Any = np.int32) -> tfds.features.Tensor:
  return tfds.features.Tensor(shape=shape, dtype=dtype)


class LocalInfo(tfds.core.DatasetInfo):
  """The DatasetInfo of a data set tfds has never published.

  Before a data set is written, tfds looks for its metadata in its public bucket, and makes a temporary folder to
  copy it into first — in the system's temp directory, which it never removes. zoo's data sets are never there.
  """

  def initialize_from_bucket(self) -> None:
    pass


class TaskExamples(tfds.core.GeneratorBasedBuilder):
  """Writes `splits[name]()` — an iterator of (key, example) — for every split, with `features`."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, name: str, features: Mapping[str, tfds.features.FeatureConnector],
               splits: Mapping[str, Callable[[], Iterator[tuple[Any, Example]]]], **kwargs: Any):
    self._features, self._splits = dict(features), dict(splits)
    super().__init__(config=tfds.core.BuilderConfig(name=name), file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return LocalInfo(builder=self, features=tfds.features.FeaturesDict(self._features))

  def _split_generators(self, dl_manager):
    return {split: make() for split, make in self._splits.items()}

  def _generate_examples(self, **kwargs):  # unused: _split_generators hands tfds the generators directly
    raise NotImplementedError

