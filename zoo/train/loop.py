"""The training loop, top to bottom: validate → mesh → data → state (fresh or restored) → steps → checkpoints.

`train_and_evaluate(config, workdir)` is what `python -m launch.train` runs. A `workdir` that holds checkpoints is
resumed from the latest one: parameters, optimizer state, step, RNG streams and the data iterator's position, so the
resumed run is bit-identical to an uninterrupted one on the same mesh. A workdir without one starts fresh, from
`train.init_from`'s parameters when set (fine-tuning, see `init_from.py`). The run owns its workdir while it trains
and the workdir records its config (`config.json`), so every command that reads a run needs only the workdir; a
resume that would change the trajectory is refused before any checkpoint is touched (`workdir.py`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from zoo.data import make_dataset, prepare
from zoo.train import init_from, workdir as workdir_record
from zoo.train.checkpoint import Checkpointer
from zoo.train.mesh import batch_sharding, make_mesh
from zoo.train.metrics import MetricsLogger
from zoo.train.options import Experiment, parse_experiment
from zoo.train.preemption import PreemptionNotice
from zoo.train.profile import StepProfiler
from zoo.train.step import compile_steps, experiment_program


class NonFiniteLoss(FloatingPointError):
  """Training produced a NaN or infinite loss or gradient; the last good checkpoint is kept."""


def open_splits(experiment: Experiment):
  """The task's train / validation sources; process 0 writes the data set once, the others wait for it."""
  data_dir = experiment.train.resolved_data_dir
  if jax.process_index() == 0:
    builder = prepare(experiment.task, data_dir)
  multihost_utils.sync_global_devices("zoo: data prepared")
  if jax.process_index() != 0:
    builder = experiment.task.builder(data_dir)
  return builder.as_data_source(split="train"), builder.as_data_source(split="validation")


def global_batch(local: Mapping[str, np.ndarray], shardings) -> dict[str, jax.Array]:
  """Assembles this process's rows into global arrays laid out by `shardings`."""
  return {name: jax.make_array_from_process_local_data(shardings[name], value) for name, value in local.items()}


def evaluate(experiment: Experiment, eval_fn, state, source, shardings) -> dict[str, float]:
  """Metrics over the validation split (or its first `eval_batches` batches), summed exactly, then averaged."""
  t = experiment.train
  batches = make_dataset(experiment.task, source, batch_size=t.resolved_eval_batch_size,
                         seed=t.seed, train=False, process_index=jax.process_index(),
                         process_count=jax.process_count())
  totals: dict[str, float] = {}
  for i, local in enumerate(batches):
    if t.eval_batches and i >= t.eval_batches:
      break
    sums = jax.device_get(eval_fn(state, global_batch(local, shardings)))
    for name, value in sums.items():
      totals[name] = totals.get(name, 0.0) + float(value)
  if not totals:
    raise ValueError(f"evaluation: the validation split has fewer than eval_batch_size "
                     f"({t.resolved_eval_batch_size}) examples")
  weight = totals.pop("weight")
  return {f"eval_{name}": value / weight for name, value in totals.items()}


def on_process_0(take):
  """`take()` on process 0 only (None elsewhere); when it raises `WorkdirError` every process raises, so that none
  goes on alone into the next collective."""
  error = result = None
  if jax.process_index() == 0:
    try:
      result = take()
    except workdir_record.WorkdirError as e:
      error = e
  if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(np.int32(error is None)):
    raise error or workdir_record.WorkdirError("process 0 may not use the workdir (its error line says why)")
  if error is not None:
    raise error
  return result


def stopped_early(step: int, reason: str, checkpointer: Checkpointer, workdir: str) -> dict[str, Any]:
  """The one line a run stopped by SIGTERM or Ctrl-C prints (process 0), and its summary."""
  if jax.process_index() == 0:
    signal_name = "SIGTERM" if reason == "preempted" else "Ctrl-C"
    print(f"{reason}: {signal_name} received; stopped at step {step} with a checkpoint in "
          f"{checkpointer.manager.directory}; the same command resumes from it", flush=True)
  return {"step": step, "stopped": reason, "workdir": workdir}


def train_and_evaluate(config: Mapping[str, Any], workdir: str, *,
                       devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Trains the experiment `config` in `workdir` on `devices` (default: all); returns and prints the summary. A
  fine-tune's config first gets the model options its checkpoint states (`init_from.fine_tune_config`), so that
  the workdir records the model it trains."""
  config = init_from.fine_tune_config(config)
  experiment = parse_experiment(config)
  workdir = workdir_record.resolve(workdir, experiment.train.log_dir)
  lock = on_process_0(lambda: workdir_record.Lock.take(workdir))
  try:
    return train_owned(config, experiment, workdir, devices)
  finally:
    if lock is not None:
      lock.release()


def train_owned(config: Mapping[str, Any], experiment: Experiment, workdir: str,
                devices: Sequence[jax.Device] | None) -> dict[str, Any]:
  """`train_and_evaluate` once the workdir is this run's: record → mesh → data → state → steps."""
  t = experiment.train
  note = on_process_0(lambda: workdir_record.record(workdir, config))
  if note:
    print(note, flush=True)
  devices = jax.devices() if devices is None else list(devices)
  mesh = make_mesh(experiment.check_devices(len(devices), jax.process_count()), devices, experiment.mesh.slices)
  program, init = experiment_program(experiment, mesh)
  train_source, eval_source = open_splits(experiment)
  train_iter = iter(make_dataset(experiment.task, train_source, batch_size=t.batch_size,
                                 seed=t.seed, train=True, process_index=jax.process_index(),
                                 process_count=jax.process_count()))
  checkpointer = Checkpointer(workdir_record.checkpoints(workdir), max_to_keep=t.max_to_keep, owner=True)
  start, state = checkpointer.restore_latest(program.abstract_state, train_iter) or (0, None)
  if state is None:
    state = init()
    if t.init_from:  # fine-tuning; a workdir with a checkpoint of its own resumes instead
      state = init_from.warm_start(state, t, workdir, primary=jax.process_index() == 0)

  first = next(train_iter)
  shardings = {name: batch_sharding(mesh, experiment.rules, value.ndim) for name, value in first.items()}
  train_fn, eval_fn = compile_steps(program, shardings)
  logger = MetricsLogger(t.log_dir or workdir, total_steps=t.steps, start_step=start,
                         enabled=jax.process_index() == 0, progress_bar=t.progress_bar)
  tokens_per_step = math.prod(first["inputs"].shape) * jax.process_count()
  last_saved = start
  metrics: dict[str, Any] = {}
  eval_metrics: dict[str, float] = {} if start < t.steps else evaluate(experiment, eval_fn, state, eval_source,
                                                                        shardings)
  clock, clock_step = time.perf_counter(), start
  local = first
  preemption, profiler = PreemptionNotice(), StepProfiler(t.profile_range, t.log_dir or workdir)
  stopped_at, at = None, start  # `at`: the step the model is at, the only one a summary may claim
  try:
    for step in range(start + 1, t.steps + 1):
      profiler.at(step, state)
      state, metrics = train_fn(state, global_batch(local, shardings))
      at = step
      is_last = step == t.steps
      stop_now = not is_last and preemption.reached(step)
      log_now = step % t.log_every == 0 or is_last
      save_now = (t.checkpoint_every and step % t.checkpoint_every == 0) or is_last or stop_now
      eval_now = (t.eval_every and step % t.eval_every == 0) or is_last
      if log_now or save_now:
        metrics = {name: float(value) for name, value in jax.device_get(metrics).items()}
        if not all(math.isfinite(metrics[name]) for name in ("loss", "grad_norm", "param_norm")):
          kept = (f"the last good checkpoint is step {last_saved} in {checkpointer.manager.directory}"
                  if last_saved else "no checkpoint had been written")
          raise NonFiniteLoss(f"training stopped: non-finite loss ({metrics['loss']}), gradient norm "
                              f"({metrics['grad_norm']}) or parameter norm ({metrics['param_norm']}) at step "
                              f"{step}; {kept}")
      if log_now:
        now = time.perf_counter()
        metrics["tokens_per_sec"] = tokens_per_step * (step - clock_step) / (now - clock)
        clock, clock_step = now, step
        logger.write(step, metrics)
        logger.advance(step, loss=metrics["loss"], tok_s=metrics["tokens_per_sec"])
      if eval_now:
        eval_metrics = evaluate(experiment, eval_fn, state, eval_source, shardings)
        logger.write(step, eval_metrics)
      if save_now:
        checkpointer.save(step, state, train_iter)
        last_saved = step
      if stop_now:
        stopped_at = step
        break
      if not is_last:
        local = next(train_iter)
  finally:
    profiler.stop()
    preemption.close()
    try:
      checkpointer.close()  # waits for the last save: a stopped run's checkpoint is complete when this returns
    finally:
      logger.close()  # also when the last save failed (a full disk): its files are flushed and closed here
  if stopped_at is not None:
    return stopped_early(stopped_at, preemption.reason, checkpointer, workdir)
  summary = {"step": at, "loss": metrics.get("loss"), **eval_metrics, "workdir": workdir}
  if jax.process_index() == 0:
    print("summary: " + json.dumps(summary), flush=True)
  return summary
