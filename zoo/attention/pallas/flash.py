"""`flash_attention`: the Pallas kernels behind the `reference_attention` signature, differentiable by custom VJP.

The wrapper turns the structured inputs into kernel operands (`terms.prepare`: O(batch · length) integers and
O(heads · rows) tables), pads the lengths up to whole blocks (padded keys are invalid, padded query rows are
dropped), moves heads in front ([batch, heads, length, dim]: the kernels' blocks are then [block, head_dim], legal on
TPU — full last dim — and GPU), and calls the forward kernel. Differentiating a `pallas_call` directly fails, so
`_flash` is a `jax.custom_vjp` whose backward runs the two backward kernels; gradients reach q, k, v and every
term's operand (tables, closed-form parameters, computed in-kernel by `KernelTerm.kernel_grad`; per-token running
sums, by `TokenCumulative.token_grads`) and from there the
encoding's parameters through autodiff of the cheap preparation around it. On a multi-device
mesh the kernel call is wrapped in `shard_map` (MaxText's pattern): the compiler cannot partition a Mosaic kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from zoo import sharding
from zoo.attention import grouped
from zoo.attention.bias import Term
from zoo.attention.chunked import check_no_dropout
from zoo.attention.masks import AttentionMask
from zoo.attention.pallas import kernels
from zoo.attention.pallas.terms import Layout, prepare


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _flash(layout: Layout, config: tuple, q, k, v, q_info, k_info, tables, sums):
  return kernels.forward(layout, q, k, v, q_info, k_info, tables, sums, **dict(config))[0]


def _flash_fwd(layout, config, q, k, v, q_info, k_info, tables, sums):
  out, lse = kernels.forward(layout, q, k, v, q_info, k_info, tables, sums, **dict(config))
  return out, (q, k, v, q_info, k_info, tables, sums, out, lse)


def _flash_bwd(layout, config, residuals, do):
  q, k, v, q_info, k_info, tables, sums, out, lse = residuals
  dq, dk, dv, dtables, dsums = kernels.backward(layout, q, k, v, q_info, k_info, tables, sums, out, lse, do,
                                                **dict(config))
  # positions, segments and validity are integers: no gradient
  return dq, dk, dv, None, None, tuple(dtables), tuple(dsums)


_flash.defvjp(_flash_fwd, _flash_bwd)


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def flash_attention(
    q: jax.Array,  # [batch, q_len, heads, head_dim]
    k: jax.Array,  # [batch, k_len, kv_heads, head_dim]; kv_heads divides heads (grouped-query attention)
    v: jax.Array,  # [batch, k_len, kv_heads, v_dim]
    *,
    mask: AttentionMask,
    bias: Sequence[Term] = (),  # `KernelTerm`s and `TokenCumulative`s
    scale: Term | None = None,  # a `KernelTerm`
    softmax_scale: float | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    block_q: int = 128,
    block_k: int = 128,
    backend: str | None = None,
    interpret: bool | None = None,
) -> jax.Array:  # [batch, q_len, heads, v_dim]
  """`reference_attention` as fused Pallas kernels (forward and backward), structured terms applied in-kernel.

  block_q / block_k: tile sizes (clamped to the padded lengths; on TPU both must be multiples of 128 — keys and the
  per-query log-sum-exp run along lanes — unless a block covers the whole length; Triton wants powers of two).
  backend: "tpu" (Mosaic) or "gpu" (Triton) kernels; default: the target platform (`zoo.sharding.target_platform`:
  the traced-for mesh's devices, so an ahead-of-time compile for a TPU topology lowers through Mosaic; the "tpu"
  layout on CPU). interpret: run in the Pallas interpreter; default: on a CPU target, where nothing else can run them.
  Under `zoo.sharding.use(mesh, rules)` the kernels run inside `jax.shard_map` over the batch and head axes the rules
  give (any mesh; axes that do not divide the batch or kv head count are left out). Query head h reads kv head
  h // (heads / kv_heads) through the kernels' index maps; sharding the query and kv heads over the same axes keeps
  each query head on the device of its kv head.
  """
  del dropout_rng
  check_no_dropout("pallas", dropout_rate)
  platform = sharding.target_platform()
  backend = backend or ("gpu" if platform == "gpu" else "tpu")
  if backend not in kernels.BACKENDS:
    raise ValueError(f"unknown pallas backend {backend!r}; valid choices: {', '.join(kernels.BACKENDS)}")
  interpret = platform == "cpu" if interpret is None else interpret
  if softmax_scale is None:
    softmax_scale = q.shape[-1] ** -0.5
  batch, q_len, heads, _ = q.shape
  k_len, kv_heads = k.shape[1], k.shape[2]
  grouped.group_size(heads, kv_heads)  # refuses kv heads that do not divide the query heads
  bq, bk = min(block_q, _round_up(q_len, 8)), min(block_k, _round_up(k_len, 8))
  q_pad, k_pad = _round_up(q_len, bq), _round_up(k_len, bk)
  layout, q_info, k_info, tables, sums = prepare(mask, bias, scale, softmax_scale, q_pad, k_pad, backend)
  heads_first = lambda x, length: jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
  config = (("bq", bq), ("bk", bk), ("backend", backend), ("interpret", interpret))
  kernel = functools.partial(_flash, layout, config)
  spec = sharding.activation_spec((("batch", batch), ("heads", kv_heads)))
  if spec is not None:
    # A Mosaic kernel cannot be partitioned by the compiler: each device runs it on its own batch rows and heads
    # (the tables follow their heads, positions their rows, running sums both). Gradients of the tables, which
    # every batch shard contributes to, are summed across shards by shard_map's transpose.
    batch_axes, head_axes = spec
    qkv, info = P(batch_axes, head_axes), P(batch_axes)
    kernel = jax.shard_map(kernel, in_specs=(qkv, qkv, qkv, info, info, (P(head_axes),) * len(tables),
                                             (qkv,) * len(sums)), out_specs=qkv, check_vma=False)
  out = kernel(heads_first(q, q_pad), heads_first(k, k_pad), heads_first(v, k_pad), q_info, k_info, tables, sums)
  return out.transpose(0, 2, 1, 3)[:, :q_len]
