"""Input pipeline: a task's tfds array_record splits → grain → global-batch-ready numpy batches.

    tfds.data_source (random access, no TensorFlow)
      → grain.MapDataset: this process's shard → seeded shuffle, reshuffled every epoch → repeat
      → pack variable-length documents into rows (segment ids, positions restart per document) or pad them
      → batch → objective fields (next-token targets and weights)

The iterator's `get_state()` / `set_state()` reproduce the stream exactly; the checkpoint stores it beside the model
so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds

from zoo.data.tasks import Task

Batch = dict[str, np.ndarray]


def prepare(task: Task, data_dir: str) -> tfds.core.DatasetBuilder:
  """Writes the task's splits under `data_dir` unless they are there already (tfds writes atomically)."""
  tfds.display_progress_bar(False)
  builder = task.builder(data_dir)
  builder.download_and_prepare()
  return builder


def _pad_document(example: dict[str, np.ndarray], length: int) -> Batch:
  tokens = example["inputs"]  # [n ≤ length]
  padded = np.zeros(length, np.int32)
  padded[:tokens.shape[0]] = tokens
  segment_ids = (np.arange(length) < tokens.shape[0]).astype(np.int32)
  return {"inputs": padded, "inputs_segment_ids": segment_ids, "inputs_positions": np.arange(length, dtype=np.int32)}


def next_token_fields(batch: Batch) -> Batch:
  """Targets and weights for causal LM on packed or padded rows.

  `inputs_segment_ids` is 0 on padding and k ≥ 1 on document k of the row. The target at t is the token at t + 1 of
  the same document; the last token of each document, and padding, get weight 0.
  """
  tokens, segments = batch["inputs"], batch["inputs_segment_ids"]  # [batch, length]
  targets = np.concatenate([tokens[:, 1:], np.zeros_like(tokens[:, :1])], axis=1)
  next_segments = np.concatenate([segments[:, 1:], np.zeros_like(segments[:, :1])], axis=1)
  weights = ((segments > 0) & (next_segments == segments)).astype(np.float32)
  return {"inputs": tokens, "targets": targets, "weights": weights, "segment_ids": segments,
          "positions": batch["inputs_positions"], "mask": segments > 0}


def token_fields(batch: Batch) -> Batch:
  """Fixed-length token tasks: every position is scored."""
  return {**batch, "weights": np.ones(batch["targets"].shape, np.float32)}


def make_dataset(task: Task, source: Any, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                 process_count: int = 1) -> grain.IterDataset:
  """Batches of `batch_size` (this process's share of the global batch) from `source`.

  Training streams forever with a reshuffle per epoch; evaluation makes one ordered pass and drops the last partial
  batch (so every eval batch has the compiled shape).
  """
  ds = grain.MapDataset.source(source)[process_index::process_count]
  if train:
    ds = ds.shuffle(seed=seed).repeat(None)
  if task.variable_length and train and task.pack:
    iter_ds = grain.experimental.FirstFitPackIterDataset(
        ds.to_iter_dataset(), length_struct={"inputs": task.length}, num_packing_bins=batch_size, seed=seed,
        shuffle_bins=False)
  elif task.variable_length:  # padded rows; evaluation always pads, so its metric does not depend on packing
    iter_ds = ds.map(lambda example: _pad_document(example, task.length)).to_iter_dataset()
  else:
    iter_ds = ds.to_iter_dataset()
  iter_ds = iter_ds.batch(batch_size, drop_remainder=True)
  fields = next_token_fields if task.objective == "next_token" else token_fields
  return iter_ds.map(fields)
