"""Learning-rate schedules and the optax optimizer built from `OptimizerOptions`."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from zoo import decay
from zoo.train.options import OptimizerOptions


def learning_rate_schedule(options: OptimizerOptions, total_steps: int) -> optax.Schedule:
  """Linear warm-up to the peak, then constant, cosine or linear decay to `end_factor` × peak at `total_steps`,
  or inverse square root (peak · √(warmup / step), continuous at the end of warm-up)."""
  peak, warmup = options.learning_rate, options.warmup_steps
  decay_steps = max(total_steps - warmup, 1)
  end = peak * options.end_factor
  if options.schedule == "constant":
    after = optax.constant_schedule(peak)
  elif options.schedule == "cosine":
    after = optax.cosine_decay_schedule(peak, decay_steps, alpha=options.end_factor)
  elif options.schedule == "linear":
    after = optax.linear_schedule(peak, end, decay_steps)
  else:  # rsqrt, counted from the end of warm-up so that it starts at the peak
    offset = max(warmup, 1)
    after = lambda step: peak * jnp.sqrt(offset / jnp.maximum(step + offset, 1))
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def make_optimizer(options: OptimizerOptions, total_steps: int) -> tuple[optax.GradientTransformation,
                                                                         optax.Schedule]:
  schedule = learning_rate_schedule(options, total_steps)
  if options.name == "adamw":
    core = optax.adamw(schedule, b1=options.b1, b2=options.b2, eps=options.eps, weight_decay=options.weight_decay,
                       mask=decay.mask)
  else:
    core = optax.chain(optax.add_decayed_weights(options.weight_decay, mask=decay.mask),
                       optax.sgd(schedule, momentum=options.momentum))
  if options.clip_norm > 0:
    core = optax.chain(optax.clip_by_global_norm(options.clip_norm), core)
  return core, schedule
