"""Input pipeline: a task's tfds array_record splits → grain → global-batch-ready numpy batches.

    tfds.data_source (random access, no TensorFlow)
      → grain.MapDataset: seeded shuffle, reshuffled every epoch → repeat
      → this process's rows of each global batch; variable-length documents packed into rows (segment ids,
        positions restart per document) or padded; other examples brought to their batch shape by the task
        (graphs: padded to bucketed node / edge counts)
      → objective fields (next-token targets and weights)

The iterator's `get_state()` / `set_state()` reproduce the stream exactly; the checkpoint stores it beside the model
so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import fcntl
import pathlib
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from zoo.data.tasks import Task

Batch = dict[str, np.ndarray]


class TaskDataError(ValueError):
  """The task's input files are missing or malformed (a loader's ValueError): the user's to fix, so commands print
  it as one line instead of a traceback."""


def prepare(task: Task, data_dir: str) -> tfds.core.DatasetBuilder:
  """Writes the task's splits under `data_dir` unless they are there already, and returns their builder.

  tfds writes a data set into an `incomplete.*` folder and renames it when done. Two first builds of one data set at
  once would race for that rename (the loser fails with FileExistsError), so a build holds a lock on the data set and
  a process that finds it held waits, then reuses what the holder wrote. A killed build leaves its `incomplete.*`
  folder behind; the next complete build removes it.
  """
  tfds.display_progress_bar(False)
  try:
    builder = task.builder(data_dir)
    if not builder.is_prepared():
      with _build_lock(builder.data_path):
        builder = task.builder(data_dir)  # read again: the data set may have been written while this process waited
        builder.download_and_prepare()
        for leftover in builder.data_path.parent.glob(f"incomplete.*_{builder.data_path.name}"):
          leftover.rmtree(missing_ok=True)
  except ValueError as e:
    raise TaskDataError(str(e)) from e
  return builder


@contextlib.contextmanager
def _build_lock(data_path: epath.Path) -> Iterator[None]:
  """Holds an exclusive lock on `<data_path>.lock`, waiting for it as long as another process holds it.

  The operating system releases a lock when its holder exits, however it exits, so a killed build never blocks the
  next one. The lock file stays: deleting it would let a third process lock a new file while the second waits on the
  old one. A data set on a remote file system (`gs://...`) is not locked.
  """
  if "://" in str(data_path):
    yield
    return
  lock = pathlib.Path(data_path.parent, f"{data_path.name}.lock")
  lock.parent.mkdir(parents=True, exist_ok=True)
  with open(lock, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    yield


def _pad_document(example: dict[str, np.ndarray], length: int) -> Batch:
  tokens = example["inputs"]  # [n ≤ length]
  padded = np.zeros(length, np.int32)
  padded[:tokens.shape[0]] = tokens
  segment_ids = (np.arange(length) < tokens.shape[0]).astype(np.int32)
  return {"inputs": padded, "inputs_segment_ids": segment_ids, "inputs_positions": np.arange(length, dtype=np.int32)}


def _pad_labelled(example: dict[str, np.ndarray], length: int) -> Batch:
  """A variable-length classification example zero-padded to `length`; `mask` marks its real tokens.

  Such tasks reserve token 0 for padding, so the mask is `inputs != 0` — which also holds for pairs `[2, n]`
  (LRA Retrieval) whose shorter side was padded when stored. Per-token targets (same shape as the inputs) are padded
  too and weighted by the example's `weights` when it has them (the positions it scores), else by the mask; a
  per-sequence target is kept as is.
  """
  tokens, targets = example["inputs"], example["targets"]  # [..., n ≤ length], [] or [n]
  widths = [(0, 0)] * (tokens.ndim - 1) + [(0, length - tokens.shape[-1])]
  inputs = np.pad(tokens, widths)
  fields = {"inputs": inputs, "targets": targets, "mask": inputs != 0}
  if np.shape(targets) == tokens.shape:  # the example's own weights (scored positions) or every real token
    weights = np.pad(example["weights"], widths) if "weights" in example else fields["mask"].astype(np.float32)
    fields.update(targets=np.pad(targets, widths), weights=weights)
  return fields


def next_token_fields(batch: Batch, packed: bool = True) -> Batch:
  """Targets and weights for causal LM on packed or padded rows.

  `inputs_segment_ids` is 0 on padding and k ≥ 1 on document k of the row. The target at t is the token at t + 1 of
  the same document; the last token of each document, and padding, get weight 0. Padded rows (one document each)
  pass only the mask, which says the same, so attention that cannot separate segments (linear) still reads them.
  """
  tokens, segments = batch["inputs"], batch["inputs_segment_ids"]  # [batch, length]
  targets = np.concatenate([tokens[:, 1:], np.zeros_like(tokens[:, :1])], axis=1)
  next_segments = np.concatenate([segments[:, 1:], np.zeros_like(segments[:, :1])], axis=1)
  weights = ((segments > 0) & (next_segments == segments)).astype(np.float32)
  fields = {"inputs": tokens, "targets": targets, "weights": weights, "positions": batch["inputs_positions"],
            "mask": segments > 0}
  return {**fields, "segment_ids": segments} if packed else fields


def token_fields(batch: Batch) -> Batch:
  """Classification and regression: every target is scored unless the examples carry their own weights."""
  return {**batch, "weights": batch.get("weights", np.ones(batch["targets"].shape, np.float32))}


def make_dataset(task: Task, source: Any, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                 process_count: int = 1) -> grain.IterDataset:
  """This process's rows of global batches of `batch_size` examples from `source`.

  Global batch b holds examples [b·batch_size, (b+1)·batch_size) of the (shuffled) stream and process p takes its
  p-th block of rows, so every process count sees the very same global batches. Packed documents are the exception:
  each process packs its own share of the documents, so packed rows depend on the process count.
  Training streams forever with a reshuffle per epoch; evaluation makes one ordered pass over the examples that fill
  whole global batches (every process runs the same number of eval steps with the compiled shape).
  """
  if batch_size % process_count:
    raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({process_count})")
  rows = batch_size // process_count
  ds = grain.MapDataset.source(source)
  if train:
    ds = ds.shuffle(seed=seed).repeat(None)
  else:
    ds = ds[:len(ds) // batch_size * batch_size]
  packed = task.variable_length and train and task.pack
  if packed:
    iter_ds = grain.experimental.FirstFitPackIterDataset(
        ds[process_index::process_count].to_iter_dataset(), length_struct={"inputs": task.length},
        num_packing_bins=rows, seed=seed, shuffle_bins=False).batch(rows, drop_remainder=True)
  else:
    if task.variable_length:  # padded rows; evaluation always pads, so its metric does not depend on packing
      pad = _pad_document if task.objective == "next_token" else _pad_labelled
      ds = ds.map(lambda example: pad(example, task.length))
    else:
      ds = ds.map(task.fixed_shape)
    iter_ds = ds.batch(rows, drop_remainder=True)[process_index::process_count].to_iter_dataset()
  if task.objective == "next_token":
    return iter_ds.map(lambda batch: next_token_fields(batch, packed))
  return iter_ds.map(token_fields)
