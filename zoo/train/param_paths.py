"""Parameters addressed by path ("backbone/blocks/0/attention/encoding/b/table"): matching, `train.trainable` and
`optimizer.lr_factor_params`.

Shipped checkpoints, `train.init_from` and the trainable mask all name parameters the same way: the module
attribute path joined with "/". A path is stable across models of one family, so parameters can be matched by path
and shape between a checkpoint and a model built from another config (another head, another encoding).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

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


@dataclasses.dataclass(frozen=True)
class LoadReport:
  source: str  # where the parameters came from
  loaded: list[str]  # same path and shape: copied
  new: list[str]  # only in the model: freshly initialised
  dropped: list[str]  # only in the checkpoint: ignored
  mismatched: dict[str, tuple[list[int], list[int]]]  # path: (checkpoint shape, model shape); freshly initialised
  frozen: list[str] = dataclasses.field(default_factory=list)  # outside `train.trainable`: kept as they start

  def summary(self) -> str:
    lines = [f"{self.source}: loaded {len(self.loaded)} parameter(s)"]
    for label, paths in (("new (initialised)", self.new), ("dropped", self.dropped),
                         ("shape-mismatched (initialised)", [f"{p} {a} -> {b}" for p, (a, b) in
                                                             self.mismatched.items()]),
                         ("frozen (not in train.trainable)", self.frozen)):
      lines.append(f"  {label}: {', '.join(paths) if paths else 'none'}")
    return "\n".join(lines)


def match(model: dict[str, tuple[int, ...]], checkpoint: dict[str, tuple[int, ...]], source: str) -> LoadReport:
  """Pairs the model's parameter shapes with the checkpoint's by path."""
  common = sorted(set(model) & set(checkpoint))
  return LoadReport(source=source, loaded=[p for p in common if tuple(model[p]) == tuple(checkpoint[p])],
                    new=sorted(set(model) - set(checkpoint)), dropped=sorted(set(checkpoint) - set(model)),
                    mismatched={p: (list(checkpoint[p]), list(model[p])) for p in common
                                if tuple(model[p]) != tuple(checkpoint[p])})


class PathPatternError(ValueError):
  """A parameter-path regex (`train.trainable`, `optimizer.lr_factor_params`) selects no parameter."""


def matching(tree, pattern: str, option: str) -> set[str]:
  """The paths of `tree` the regex `pattern` (re.search) matches; none is an error naming `option`."""
  paths = list(flatten(tree))
  matched = {path for path in paths if re.search(pattern, path)}
  if not matched:
    raise PathPatternError(f"{option} {pattern!r} matches no parameter path (paths look like {', '.join(paths[:3])})")
  return matched


def frozen(paths: Iterable[str], trainable: str) -> list[str]:
  """The paths the regex `trainable` (re.search; "" = all) leaves out, sorted: the parameters training keeps."""
  if not trainable:
    return []
  pattern = re.compile(trainable)
  return sorted(path for path in paths if not pattern.search(path))


def trainable_only(tx: optax.GradientTransformation, trainable: str) -> optax.GradientTransformation:
  """`tx` restricted to the parameters whose path matches the regex `trainable` (re.search; "" = all).

  The other parameters' gradients are zeroed before `tx` (so clipping and moments see only trainable ones) and their
  updates after it (so weight decay cannot move them): they stay bit-unchanged. The optimizer state keeps its
  usual structure, so checkpoints and shardings do not depend on the regex.
  """
  if not trainable:
    return tx

  def only_trainable(tree):
    kept = matching(tree, trainable, "train.trainable")
    return jax.tree_util.tree_map_with_path(lambda kp, x: x if path_of(kp) in kept else jnp.zeros_like(x), tree)

  def update(updates, state, params=None):
    updates, state = tx.update(only_trainable(updates), state, params)
    return only_trainable(updates), state

  return optax.GradientTransformation(tx.init, update)


def learning_rate_factor(tx: optax.GradientTransformation, pattern: str, factor: float) -> optax.GradientTransformation:
  """`tx` with the updates of the parameters whose path matches the regex `pattern` (re.search; "" = none) multiplied
  by `factor`: their learning rate (and decoupled weight decay) × factor, the moments unchanged. For parameters that
  should move at another pace than the rest: a fine-tune's new tables beside a pretrained body, or memory_rpe's decays
  beside the readout (docs/results.md, sparse memory: measured there, it does not close that experiment's gap)."""
  if not pattern:
    return tx

  def update(updates, state, params=None):
    updates, state = tx.update(updates, state, params)
    scaled = matching(updates, pattern, "optimizer.lr_factor_params")
    return jax.tree_util.tree_map_with_path(lambda kp, u: u * factor if path_of(kp) in scaled else u, updates), state

  return optax.GradientTransformation(tx.init, update)
