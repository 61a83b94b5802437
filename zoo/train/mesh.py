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
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo.sharding import Rules, logical_to_mesh
from zoo.train.options import MESH_AXES


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device], slices: int = 1) -> Mesh:
  """A (data, fsdp, tensor) mesh over `devices` with Auto axes (shardings by annotation, GSPMD propagates).

  With `slices` > 1 the data axis is laid out slice-major: slice s holds rows s·data/slices … of it, so fsdp and
  tensor collectives stay on each slice's interconnect and only the data axis crosses DCN. Slices are the TPU
  devices' `slice_index`; on other platforms (CPU, GPU clusters) each process counts as a slice.
  """
  if slices == 1:
    grid = np.asarray(devices).reshape(tuple(shape))
  else:
    data, fsdp, tensor = shape
    by_process = devices[0].platform != "tpu"
    try:
      grid = mesh_utils.create_hybrid_device_mesh((data // slices, fsdp, tensor), (slices, 1, 1), devices,
                                                  process_is_granule=by_process)
    except ValueError as e:
      raise ValueError(f"mesh: slices={slices} over {len(devices)} devices: {str(e).splitlines()[0]}") from None
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
