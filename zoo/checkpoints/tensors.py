"""Parameters as safetensors files, through the `safetensors` package: one format for shipped checkpoints,
converted folders and Hugging Face directories, readable without pickle or orbax and by other safetensors readers.

The package's flax API is the one that takes bfloat16 (its numpy API has no such dtype); arrays come back as numpy.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import safetensors.flax
from safetensors import SafetensorError

from zoo.errors import CheckpointError


def write(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
  """Writes {name: float32 / bfloat16 array}; equal arrays give equal bytes (the library orders the tensors)."""
  safetensors.flax.save_file({name: jnp.asarray(value) for name, value in arrays.items()}, str(path))


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{name: array} as stored (float32 or bfloat16); a damaged file is a one-line CheckpointError."""
  try:
    with safetensors.safe_open(str(path), framework="flax") as f:
      return {name: np.asarray(f.get_tensor(name)) for name in f.keys()}  # noqa: SIM118 — safe_open is no mapping
  except (OSError, SafetensorError) as e:
    raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
