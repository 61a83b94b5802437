"""Long Range Arena's real-data tasks (Tay et al. 2021; shared/papers/spe.md), loaded from the files a user has.

- `lra_text`: IMDb sentiment from the `aclImdb` folders (`train|test/pos|neg/*.txt`), byte-level, truncated to
  `length` bytes; 2 classes. The test folder is the validation split (LRA evaluates on it).
- `lra_retrieval`: AAN citation pairs from LRA's TSV files (`label  id1  id2  text1  text2` per line, label 0 or 1):
  do the two papers cite each other? Each side byte-level and truncated to `length`; pairs feed a dual-encoder
  head (inputs [2, n]); 2 classes.
- `lra_image`: CIFAR-10 from its python pickle batches (`data_batch_1..5`, `test_batch`), converted to grayscale as
  LRA does (TensorFlow's rgb_to_grayscale: 0.2989 R + 0.5870 G + 0.1140 B, back to uint8 by × 255.5 / 255 and
  truncation) and flattened to 1024 pixel tokens; 10 classes. A pickle can call any function it names, so the
  batches are read by `CifarUnpickler`, which admits only the names a numpy array needs: a file that names anything
  else is refused before it runs.

Byte tokens are the byte value + 1, so token 0 is padding (vocabulary 257). A missing folder or file, or a malformed
line or batch, raises a ValueError naming the file and what was expected.
"""

from __future__ import annotations

import codecs
import dataclasses
import pathlib
import pickle

import numpy as np
import tensorflow_datasets as tfds
from numpy._core import multiarray, numeric  # numpy's array pickle helpers

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import TaskExamples, data_name, require_file, tensor
from zoo.data.tasks.registry import register

BYTE_VOCAB = 257  # byte + 1; 0 = padding
IMDB_FORMAT = "the aclImdb folder: train/pos, train/neg, test/pos, test/neg holding one review per .txt file"
AAN_FORMAT = "LRA's AAN TSV: label<TAB>id1<TAB>id2<TAB>text1<TAB>text2 per line, label 0 or 1"
CIFAR_FORMAT = "a CIFAR-10 python batch: a pickled dict with b'data' [n, 3072] uint8 and b'labels' [n] in 0..9"
CIFAR_FILES = {"train": [f"data_batch_{k}" for k in range(1, 6)], "validation": ["test_batch"]}
GRAY = np.array([0.2989, 0.5870, 0.1140])


def byte_tokens(text: bytes, length: int) -> np.ndarray:
  """[min(len(text), length)] int32: the first `length` bytes, each + 1."""
  return np.frombuffer(text[:length], np.uint8).astype(np.int32) + 1


def check_options(task: str, options, expected: str) -> None:
  """A ValueError unless `options.folder` is a directory and `options.length` (where there is one) is >= 1."""
  check(bool(options.folder) and pathlib.Path(options.folder).expanduser().is_dir(),
        f"task {task!r}: folder {options.folder!r} is not a directory; expected {expected}")
  length = getattr(options, "length", 1)
  check(length >= 1, f"task {task!r}: length must be >= 1, got {length}")


class _LraLoader(Task):
  """Every LRA loader reads one folder (`options.folder`) and, for text, cuts sequences at `options.length`."""

  family = "encoder"
  objective = "sequence_classification"

  @property
  def length(self) -> int:
    return self.options.length

  def root(self) -> pathlib.Path:
    return pathlib.Path(self.options.folder).expanduser()


@register("lra_text")
class LraText(_LraLoader):
  variable_length = True

  @dataclasses.dataclass(frozen=True)
  class Options:
    folder: str = ""  # the aclImdb directory
    length: int = 4000  # bytes

    def __post_init__(self):
      check_options("lra_text", self, IMDB_FORMAT)

  def model_fields(self):
    return {"vocab_size": BYTE_VOCAB, "max_length": self.length, "head": "sequence", "num_classes": 2}

  def files(self) -> dict[str, list[tuple[pathlib.Path, int]]]:
    """split -> sorted (review file, label) pairs; negative reviews are label 0, positive ones 1."""
    root, found = self.root(), {}
    for split, folder in (("train", "train"), ("validation", "test")):
      found[split] = [(p, label) for label, polarity in enumerate(("neg", "pos"))
                      for p in sorted((root / folder / polarity).glob("*.txt"))]
      check(bool(found[split]), f"task 'lra_text': no review under {str(root / folder)!r}; expected {IMDB_FORMAT}")
    return found

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    files, length = self.files(), self.length

    def examples(split: str):
      for path, label in files[split]:
        yield path.name + str(label), {"inputs": byte_tokens(path.read_bytes(), length), "targets": np.int32(label)}

    return TaskExamples(name=data_name(self.name, self.options, [p for f in files.values() for p, _ in f]),
                        features={"inputs": tensor((None,)), "targets": tensor()},
                        splits={split: (lambda split=split: examples(split)) for split in files},
                        data_dir=data_dir)


def read_aan(path: pathlib.Path, length: int):
  """(inputs [2, n] int32, label) per line of an AAN TSV file; the shorter side is zero-padded to n."""
  for number, line in enumerate(require_file("lra_retrieval", path, AAN_FORMAT).read_bytes().splitlines(), 1):
    fields = line.split(b"\t")
    label = fields[0].strip().decode("ascii", "replace")
    if len(fields) != 5 or label not in ("0", "1", "0.0", "1.0"):
      raise ValueError(f"task 'lra_retrieval': {path}:{number}: expected {AAN_FORMAT}; got "
                       f"{len(fields)} field(s) starting {line[:40]!r}")
    sides = [byte_tokens(fields[3], length), byte_tokens(fields[4], length)]
    pair = np.zeros((2, max(s.shape[0] for s in sides)), np.int32)
    for k, side in enumerate(sides):
      pair[k, :side.shape[0]] = side
    yield pair, int(float(label))


@register("lra_retrieval")
class LraRetrieval(_LraLoader):
  variable_length = True

  @dataclasses.dataclass(frozen=True)
  class Options:
    folder: str = ""  # the directory of LRA's AAN TSV files
    train_file: str = "new_aan_pairs.train.tsv"
    validation_file: str = "new_aan_pairs.eval.tsv"
    length: int = 4000  # bytes per document

    def __post_init__(self):
      check_options("lra_retrieval", self, AAN_FORMAT)

  def model_fields(self):
    return {"vocab_size": BYTE_VOCAB, "max_length": self.length, "head": "dual", "num_classes": 2}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    root, o = self.root(), self.options
    files = {"train": require_file(self.name, root / o.train_file, AAN_FORMAT),
             "validation": require_file(self.name, root / o.validation_file, AAN_FORMAT)}

    def examples(split: str):
      for i, (pair, label) in enumerate(read_aan(files[split], o.length)):
        yield i, {"inputs": pair, "targets": np.int32(label)}

    return TaskExamples(name=data_name(self.name, o, files.values()),
                        features={"inputs": tensor((2, None)), "targets": tensor()},
                        splits={split: (lambda split=split: examples(split)) for split in files},
                        data_dir=data_dir)


class CifarUnpickler(pickle.Unpickler):
  """Unpickles dicts, lists, bytes, numbers and numpy arrays, and nothing that could run code.

  The globals are those numpy arrays pickle to: `_reconstruct` + `ndarray` + `dtype` (protocols 2–4; CIFAR-10's own
  files, written by Python 2, name `numpy.core`, numpy 2 writes `numpy._core`), `_frombuffer` (protocol 5), and
  `_codecs.encode`, with which Python 3 writes bytes at protocol 2. Any other name is an UnpicklingError.
  """

  SAFE = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode,
          ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
          ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
          ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
          ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer}

  def find_class(self, module: str, name: str):
    if (module, name) not in self.SAFE:
      raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch holds only arrays, lists, bytes "
                                   "and numbers")
    return self.SAFE[module, name]


def read_cifar_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """(grayscale images [n, 1024] uint8, labels [n] int32) of one CIFAR-10 python batch."""
  try:
    with open(require_file("lra_image", path, CIFAR_FORMAT), "rb") as f:
      batch = CifarUnpickler(f, encoding="bytes").load()
    rgb = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 1024)
    labels = np.asarray(batch[b"labels"], np.int32)
    assert labels.shape == rgb.shape[:1] and labels.min() >= 0 and labels.max() <= 9
  except (pickle.UnpicklingError, EOFError, LookupError, AttributeError, TypeError, ValueError,
          AssertionError) as error:
    raise ValueError(f"task 'lra_image': {path}: expected {CIFAR_FORMAT} ({type(error).__name__}: {error})")
  gray = np.einsum("c,ncp->np", GRAY, rgb.astype(np.float64) / 255.0)
  return np.floor(gray * 255.5).astype(np.uint8), labels


@register("lra_image")
class LraImage(_LraLoader):
  @dataclasses.dataclass(frozen=True)
  class Options:
    folder: str = ""  # the cifar-10-batches-py directory

    def __post_init__(self):
      check_options("lra_image", self, "the cifar-10-batches-py directory (data_batch_1..5, test_batch)")

  @property
  def length(self) -> int:
    return 1024

  def model_fields(self):
    return {"vocab_size": 256, "max_length": 1024, "head": "sequence", "num_classes": 10}

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    root = self.root()
    files = {split: [require_file(self.name, root / name, CIFAR_FORMAT) for name in names]
             for split, names in CIFAR_FILES.items()}

    def examples(split: str):
      for path in files[split]:
        images, labels = read_cifar_batch(path)
        for i in range(labels.shape[0]):
          yield f"{path.name}:{i}", {"inputs": images[i], "targets": labels[i]}

    return TaskExamples(name=data_name(self.name, self.options, [p for f in files.values() for p in f]),
                        features={"inputs": tensor((1024,), np.uint8), "targets": tensor()},
                        splits={split: (lambda split=split: examples(split)) for split in files},
                        data_dir=data_dir)
