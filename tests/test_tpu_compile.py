"""The Pallas kernels compile for TPU without a TPU: libtpu (the `tpu` extra) lets JAX on this CPU machine compile
ahead of time for a TPU topology. Forward and backward of the kernel, with each registered encoding's structured
terms (ALiBi, T5 buckets, per-lag RPE, URPE's B + C, FoX's per-token running sums), go through Mosaic for v5e and
v5p; batch-sharded callers wrap the kernel in `jax.shard_map` (a Mosaic kernel cannot be partitioned automatically).
The compiled memory per device is printed (run with `-s` to see it) and attached to the test report as a user
property."""

import importlib.util
import os

# libtpu takes a machine-wide lock file when it loads; several test workers (and other users of this machine)
# compiling at once would fail on it. Compiling ahead of time needs no exclusive TPU access.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from zoo import attention, positional  # noqa: E402
from zoo.attention import AttentionMask  # noqa: E402
from zoo.positional import ModelDims  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                reason="libtpu is not installed (pip install -e '.[tpu]'): no TPU compiler")

# Realistic TPU shapes: blocks of 128 (lanes), head_dim 128, bfloat16 activations, batch 1 per device.
L, H, D, BLOCK = 2048, 4, 128, 128
TOPOLOGIES = ["v5e:2x2", "v5p:2x2x1"]
ENCODINGS = ["alibi", "t5_bias", "rpe", "urpe", "fox"]


def compile_train_step(topology_name, encoding_name, causal, impl="pallas", length=L, window=None):
  """Compiles value-and-grad of attention over a batch sharded across the topology's devices: the flash kernel
  (`impl="pallas"`) or the dense reference ("xla", for memory comparisons); with a sliding `window`, if given."""
  from jax.experimental import topologies  # noqa: PLC0415  (needs libtpu)
  topology = topologies.get_topology_desc(platform="tpu", topology_name=topology_name)
  mesh = Mesh(np.array(topology.devices), ("data",))
  batch = len(topology.devices)
  with nnx.use_eager_sharding(False):
    encoding = positional.build(encoding_name, None, ModelDims(H, D, H * D, length, causal), rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(encoding)

  def step(q, k, v, positions, params):
    def loss(q, k, v, params):
      encoding = nnx.merge(graphdef, params)
      coords = positional.Coordinates(positions, features=q.reshape(*q.shape[:2], -1))  # q stands in for the input
      bias, scale = positional.attention_terms(encoding, coords, coords)
      kernel_options = dict(block_q=BLOCK, block_k=BLOCK, backend="tpu", interpret=False) if impl == "pallas" else {}
      out = attention.attend(q, k, v, impl=impl, mask=AttentionMask(positions, positions, causal=causal, window=window),
                             bias=bias, scale=scale, **kernel_options)
      return jnp.sum(out.astype(jnp.float32) ** 2)
    value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(q, k, v, params)
    return jax.lax.psum(value, "data"), grads[:3], jax.lax.psum(grads[3], "data")

  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P("data"),) * 4 + (P(),),
                          out_specs=(P(), (P("data"),) * 3, P()), check_vma=False)
  abstract = lambda shape, dtype, spec: jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, spec))
  qkv = abstract((batch, length, H, D), jnp.bfloat16, P("data"))
  abstract_params = jax.tree.map(lambda p: abstract(p.shape, p.dtype, P()), params)
  positions = abstract((batch, length), jnp.int32, P("data"))
  return jax.jit(sharded).lower(qkv, qkv, qkv, positions, abstract_params).compile()


@pytest.mark.parametrize("topology_name", [TOPOLOGIES[0], pytest.param(TOPOLOGIES[1], marks=pytest.mark.slow)])
@pytest.mark.parametrize("encoding_name", ENCODINGS)
def test_forward_and_backward_compile_for_tpu(topology_name, encoding_name, record_property):
  compiled = compile_train_step(topology_name, encoding_name, causal=encoding_name != "t5_bias")
  hlo = compiled.as_text()
  assert hlo.count("tpu_custom_call") >= 3  # the forward, dK/dV and dQ kernels went through Mosaic
  stats = compiled.memory_analysis()
  per_device = {"arguments": stats.argument_size_in_bytes, "outputs": stats.output_size_in_bytes,
                "temporaries": stats.temp_size_in_bytes}
  record_property("memory_per_device_bytes", per_device)
  print(f"{topology_name} {encoding_name}: {per_device}")
  # The kernels hold no [heads, L, L] array: far less than half of one (≈ 0.2 MiB on v5e, ≈ 7 MiB on v5p at L = 2048
  # against 32 MiB). The dense reference's figures are in launch/bench_attention.py's `--aot_topology` rows.
  assert stats.temp_size_in_bytes < H * L * L * 4 // 2


@pytest.mark.parametrize("impl,mesh", [
    pytest.param(impl, mesh, id=f"{impl}-{name}", marks=() if (impl, name) in {("pallas", "fsdp"), ("auto", "tensor")}
                 else pytest.mark.slow)
    for impl in ("pallas", "auto") for name, mesh in (("data", dict(data=4, fsdp=1, tensor=1)),
                                                      ("fsdp", dict(data=1, fsdp=4, tensor=1)),
                                                      ("tensor", dict(data=1, fsdp=2, tensor=2)))])
def test_the_full_train_step_compiles_mosaic_kernels_for_a_multi_chip_slice(impl, mesh, data_dir):
  """The fit check traces for the topology's devices: `auto` picks the kernel as on a TPU host, the kernel lowers
  through Mosaic (not the CPU interpreter) inside shard_map, so a 4-chip slice compiles under every mesh layout."""
  from conftest import smoke_config  # noqa: PLC0415
  from zoo.train import aot  # noqa: PLC0415

  config = smoke_config(data_dir)
  config["model"]["attention"]["impl"] = impl
  config["mesh"] = mesh
  report = aot.fit_check(config, "v5e:2x2")
  assert report.attention_impl == ("pallas" if impl == "pallas" else "pallas (auto)")
  assert report.mosaic_kernels >= 3  # forward, dK/dV and dQ kernels of the one layer
  assert report.fits


def test_a_two_slice_mesh_lays_the_data_axis_across_slices_and_the_rest_inside_one():
  from zoo.train.aot import topology_devices  # noqa: PLC0415
  from zoo.train.mesh import make_mesh  # noqa: PLC0415

  devices = topology_devices("v5e:2x2", num_slices=2)
  assert len(devices) == 8
  mesh = make_mesh((4, 1, 2), devices, slices=2)
  slice_of = np.vectorize(lambda d: d.slice_index)(mesh.devices)  # [data 4, fsdp 1, tensor 2]
  assert (slice_of[:2] == 0).all() and (slice_of[2:] == 1).all()
