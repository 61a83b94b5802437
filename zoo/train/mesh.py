"""The device mesh and the shardings of state and batches, from logical axis names.

Parameters carry logical axis names (`embed`, `heads`, `kv`, `mlp`, `vocab`) as metadata; the config's rules map each
name onto mesh axes (`data`, `fsdp`, `tensor`) — MaxText's pattern: the model never names a mesh axis, so one model
runs data-parallel, FSDP or tensor-parallel by changing the config. Batches are split over the `batch` rule's axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo.train.options import MESH_AXES

Rules = tuple[tuple[str, tuple[str, ...]], ...]


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device]) -> Mesh:
  """A (data, fsdp, tensor) mesh over `devices` with Auto axes (shardings by annotation, GSPMD propagates)."""
  grid = np.asarray(devices).reshape(tuple(shape))
  return Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def logical_to_mesh(logical: Sequence[str | None], rules: Rules) -> PartitionSpec:
  """The PartitionSpec for an array whose dimensions have the logical names `logical`.

  A mesh axis shards at most one dimension: a rule whose mesh axes are already used by an earlier dimension
  leaves its dimension replicated.
  """
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name in logical:
    axes = tuple(a for a in table.get(name, ()) if a not in used) if name else ()
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else (axes or None))
  return PartitionSpec(*spec)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def state_shardings(state: nnx.State, mesh: Mesh, rules: Rules):
  """NamedShardings for an nnx State (concrete or abstract) from its variables' logical axis names."""
  specs = nnx.get_partition_spec(state)
  return jax.tree.map(lambda spec: NamedSharding(mesh, logical_to_mesh(tuple(spec), rules)), specs,
                      is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int) -> NamedSharding:
  """Leading (batch) dimension over the `batch` rule's mesh axes, the rest replicated."""
  return NamedSharding(mesh, logical_to_mesh(("batch",) + (None,) * (ndim - 1), rules))
