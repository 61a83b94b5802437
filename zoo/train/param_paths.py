"""Parameters addressed by path ("backbone/blocks/0/attention/encoding/b/table"), and `train.trainable`.

Shipped checkpoints, `train.init_from` and the trainable mask all name parameters the same way: the module
attribute path joined with "/". A path is stable across models of one family, so parameters can be matched by path
and shape between a checkpoint and a model built from another config (another head, another encoding).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


def path_of(keypath) -> str:
  """'backbone/blocks/0/...' from a jax key path through an nnx.State (the trailing `.value` is dropped)."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", ""))) for k in keypath
                  if not isinstance(k, jax.tree_util.GetAttrKey))


def flatten(params: nnx.State) -> dict[str, jax.Array]:
  """{path: array} of an nnx.State of parameters (arrays stay where they are)."""
  return {path_of(kp): leaf for kp, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def replace(params: nnx.State, values: dict[str, jax.Array | np.ndarray]) -> nnx.State:
  """`params` with the leaves named in `values` replaced (the rest kept)."""
  return jax.tree_util.tree_map_with_path(lambda kp, leaf: values.get(path_of(kp), leaf), params)


class TrainableError(ValueError):
  """`train.trainable` selects no parameter."""


def trainable_only(tx: optax.GradientTransformation, trainable: str) -> optax.GradientTransformation:
  """`tx` restricted to the parameters whose path matches the regex `trainable` (re.search; "" = all).

  The other parameters' gradients are zeroed before `tx` (so clipping and moments see only trainable ones) and their
  updates after it (so weight decay cannot move them): they stay bit-unchanged. The optimizer state keeps its
  usual structure, so checkpoints and shardings do not depend on the regex.
  """
  if not trainable:
    return tx
  pattern = re.compile(trainable)

  def only_trainable(tree):
    kept = {path: bool(pattern.search(path)) for path in flatten(tree)}
    if not any(kept.values()):
      raise TrainableError(f"train.trainable {trainable!r} matches no parameter path (paths look like "
                           f"{', '.join(list(kept)[:3])})")
    return jax.tree_util.tree_map_with_path(lambda kp, x: x if kept[path_of(kp)] else jnp.zeros_like(x), tree)

  def update(updates, state, params=None):
    updates, state = tx.update(only_trainable(updates), state, params)
    return only_trainable(updates), state

  return optax.GradientTransformation(tx.init, update)
