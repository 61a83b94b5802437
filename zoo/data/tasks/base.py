"""The task contract: what the training loop needs to know about a data set, and nothing about its storage.

A task names the model family it trains, the fields its examples carry, the objective (which loss and metrics), the
model options it fixes (vocabulary, number of classes, length), and builds a tfds builder that writes its examples
once as array_record shards. Everything else — shuffling, sharding by process, batching, packing — is the pipeline's
job (`zoo/data/pipeline.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import tensorflow_datasets as tfds

# How the loss reads a batch:
#   token_classification: logits [batch, length, classes] vs targets [batch, length], weighted per token;
#   next_token:           decoder logits vs inputs shifted left inside each segment;
#   sequence_classification: logits [batch, classes] vs targets [batch];
#   regression:           predictions [batch] vs float targets [batch] (MSE loss, MAE metric).
Objective = Literal["token_classification", "next_token", "sequence_classification", "regression"]


class Task:
  """Base class of registered tasks. Subclasses define `Options` (a frozen dataclass) and the methods below."""

  name: ClassVar[str] = ""
  family: ClassVar[str] = ""  # the model registry name this task trains ("encoder", "decoder", ...)
  objective: ClassVar[Objective]
  # Examples are documents of ≤ `length` tokens (packed or padded). Variable-length classification tasks reserve
  # token 0 for padding: the pipeline pads them with 0 and passes `mask = inputs != 0` to the model.
  variable_length: ClassVar[bool] = False
  # Text tasks: the byte that each token id stands for (`launch.generate` encodes prompts and decodes output with
  # it); None: token ids are not text.
  alphabet: ClassVar[bytes | None] = None

  @dataclasses.dataclass(frozen=True)
  class Options:
    pass

  def __init__(self, options: Options):
    self.options = options

  @property
  def length(self) -> int:
    """The sequence length of a batch."""
    raise NotImplementedError

  @property
  def pack(self) -> bool:
    """Whether variable-length training examples are packed into rows (with segment ids) rather than padded."""
    return False

  def fixed_shape(self, example: dict[str, Any]) -> dict[str, Any]:
    """A stored fixed-length example with every field at its batch shape. Tasks whose examples vary in size in
    another way than token count (graphs: nodes and edges) pad here; variable-length token sequences are packed or
    padded by the pipeline."""
    return example

  def model_fields(self) -> Mapping[str, Any]:
    """Model options the task fixes (vocab_size, num_classes, head, max_length, ...)."""
    raise NotImplementedError

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    """The tfds builder that writes this task's splits ('train', 'validation') under `data_dir`."""
    raise NotImplementedError
