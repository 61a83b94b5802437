"""LRA loaders on small files written in the real formats: bytes, labels, pairs, LRA's grayscale, clear errors."""

import os
import pathlib
import pickle

import numpy as np
import pytest

import task_files
from zoo.data import TaskDataError, make_dataset, prepare, tasks
from zoo.data.tasks import lra


def test_text_reads_the_aclimdb_tree_as_bytes_plus_one(data_dir, tmp_path):
  task = tasks.build("lra_text", dict(task_files.imdb(tmp_path), length=20))
  builder = prepare(task, data_dir)
  train, valid = builder.as_data_source(split="train"), builder.as_data_source(split="validation")
  assert len(train) == len(valid) == 6
  by_label = {0: [], 1: []}
  for i in range(6):
    by_label[int(train[i]["targets"])].append(train[i]["inputs"])
  texts = sorted(bytes((row - 1).astype(np.uint8)) for row in by_label[1])
  assert texts == sorted((b"p" * (5 + 10 * k) + b" \xc3\xa9<br />")[:20] for k in range(3))
  assert all(row[0] == ord("n") + 1 for row in by_label[0])
  batch = next(iter(make_dataset(task, valid, batch_size=6, seed=0, train=False)))
  assert batch["inputs"].shape == (6, 20) and batch["inputs"].max() <= 256 and batch["mask"].sum() == 2 * (14 + 20 + 20)
  assert task.model_fields() == {"vocab_size": 257, "max_length": 20, "head": "sequence", "num_classes": 2}


def test_retrieval_reads_tsv_pairs_into_two_rows(data_dir, tmp_path):
  task = tasks.build("lra_retrieval", dict(task_files.aan(tmp_path), length=16))
  source = prepare(task, data_dir).as_data_source(split="train")
  assert len(source) == 8
  # tfds stores examples in an order of its own: find line 5 ("1.0  W05-1  W05-2  first paper 5 xxxxx  second 5")
  example = next(source[i] for i in range(8) if (source[i]["inputs"][1] > 0).sum() == 8 and
                 source[i]["inputs"][1][7] == ord("5") + 1)
  assert example["inputs"].shape == (2, 16) and example["targets"] == 1
  assert bytes((example["inputs"][0] - 1).astype(np.uint8)) == b"first paper 5 xx"
  second = example["inputs"][1]
  assert bytes((second[second > 0] - 1).astype(np.uint8)) == b"second 5" and not second[8:].any()
  batch = next(iter(make_dataset(task, source, batch_size=4, seed=0, train=False)))
  assert batch["inputs"].shape == batch["mask"].shape == (4, 2, 16) and batch["targets"].shape == (4,)
  assert sorted(int(source[i]["targets"]) for i in range(8)) == [0] * 4 + [1] * 4
  assert task.model_fields()["head"] == "dual"


def test_image_is_lra_grayscale_of_the_pickled_batches(data_dir, tmp_path):
  options = task_files.cifar10(tmp_path)
  source = prepare(tasks.build("lra_image", options), data_dir).as_data_source(split="train")
  assert len(source) == 20
  expected = set()
  for k in range(1, 6):
    with open(f"{options['folder']}/data_batch_{k}", "rb") as f:
      raw = pickle.load(f, encoding="bytes")
    for image, label in zip(raw[b"data"], raw[b"labels"]):
      # TensorFlow's rgb_to_grayscale on uint8: to [0, 1], weighted sum, × 255.5, truncated
      gray = [int((0.2989 * int(image[p]) + 0.5870 * int(image[1024 + p]) + 0.1140 * int(image[2048 + p])) / 255
                  * 255.5) for p in range(1024)]
      expected.add((bytes(gray), label))
  assert {(bytes(source[i]["inputs"]), int(source[i]["targets"])) for i in range(20)} == expected


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_image_reads_every_pickle_protocol_numpy_writes(protocol, tmp_path):
  """Protocol 2 as CIFAR-10's own files (Python 2, numpy 1.x: `numpy.core`), 4 and 5 as numpy 2 writes them."""
  options = task_files.cifar10(tmp_path)
  path = f"{options['folder']}/data_batch_1"
  with open(path, "rb") as f:
    batch = pickle.load(f, encoding="bytes")
  data = pickle.dumps(batch, protocol=protocol)
  with open(path, "wb") as f:
    f.write(data.replace(b"numpy._core.", b"numpy.core.") if protocol == 2 else data)
  images, labels = lra.read_cifar_batch(pathlib.Path(path))
  assert images.shape == (4, 1024) and labels.tolist() == batch[b"labels"]


class Hostile:
  """Unpickles by calling `call(*args)`: what a crafted file can make `pickle.load` do."""

  def __init__(self, call, *args):
    self.call, self.args = call, args

  def __reduce__(self):
    return self.call, self.args


@pytest.mark.parametrize("payload", [
    lambda marker: Hostile(os.system, f"touch {marker}"),
    lambda marker: Hostile(exec, f"open({str(marker)!r}, 'w').close()"),
    lambda marker: {b"data": Hostile(os.system, f"touch {marker}"), b"labels": [0]},
], ids=["os.system", "builtins.exec", "inside-a-batch"])
def test_a_hostile_pickle_runs_nothing_and_gets_the_loaders_error(payload, tmp_path):
  options = task_files.cifar10(tmp_path)
  marker = tmp_path / "MARKER"
  with open(f"{options['folder']}/data_batch_2", "wb") as f:
    pickle.dump(payload(marker), f)
  with pytest.raises(TaskDataError, match=r"data_batch_2: expected a CIFAR-10 python batch.*UnpicklingError: "
                                          r"refused to load (posix\.system|builtins\.exec)"):
    prepare(tasks.build("lra_image", options), str(tmp_path / "tfds"))
  assert not marker.exists()


@pytest.mark.parametrize("name, write, breaks, message", [
    ("lra_retrieval", task_files.aan, lambda root: (root / "new_aan_pairs.train.tsv").write_text("1\tonly two\n"),
     r"new_aan_pairs.train.tsv:1: expected LRA's AAN TSV"),
    ("lra_image", task_files.cifar10, lambda root: (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"junk"),
     r"test_batch: expected a CIFAR-10 python batch"),
    ("lra_image", task_files.cifar10, lambda root: (root / "cifar-10-batches-py" / "data_batch_3").unlink(),
     r"data_batch_3' is not a file; expected a CIFAR-10 python batch"),
])
def test_malformed_files_are_named(name, write, breaks, message, tmp_path):
  options = write(tmp_path)
  breaks(tmp_path)
  with pytest.raises(ValueError, match=message):
    prepare(tasks.build(name, options), str(tmp_path / "tfds"))


def test_missing_folders_are_named(tmp_path):
  with pytest.raises(ValueError, match="folder '/no/such' is not a directory; expected the aclImdb folder"):
    tasks.build("lra_text", dict(folder="/no/such"))
  (tmp_path / "train" / "pos").mkdir(parents=True)
  with pytest.raises(ValueError, match="no review under .*train'; expected the aclImdb folder"):
    tasks.build("lra_text", dict(folder=str(tmp_path))).files()
