"""The device mesh and the shardings of state and batches, from logical axis names.

Parameters carry logical axis names (`embed`, `heads`, `kv`, `mlp`, `vocab`) as metadata; the config's rules map each
name onto mesh axes (`data`, `fsdp`, `tensor`) through `zoo.sharding.logical_to_mesh`, so one model runs
data-parallel, FSDP or tensor-parallel by changing the config. Batches are split over the `batch` rule's axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo.sharding import Rules, logical_to_mesh
from zoo.train.options import MESH_AXES


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device]) -> Mesh:
  """A (data, fsdp, tensor) mesh over `devices` with Auto axes (shardings by annotation, GSPMD propagates)."""
  grid = np.asarray(devices).reshape(tuple(shape))
  return Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


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
