r"""Trains (or fit-checks) an experiment config.

  python -m launch.train --config=configs/pi.py:urpe --workdir=/tmp/zoo/pi_urpe [--config.train.steps=2000]
  python -m launch.train --config=configs/pi.py:urpe --workdir=/tmp/x --aot_topology=v5e:16x16   # compile only

A workdir with checkpoints is resumed from the latest; one without starts fresh or, with
--config.train.init_from=NAME|WORKDIR, from a pretrained model's parameters (fine-tuning, configs/finetune_*.py).
Bad configs (unknown keys, invalid choices, sizes that do not divide) fail before anything is compiled with a
one-line message and exit status 2; so do a workdir another run owns and a resume whose config would change the
trajectory (zoo/train/workdir.py). SIGTERM saves a checkpoint at the next step and exits 143, Ctrl-C the same with
exit status 130 — 128 + the signal, as for a process the signal killed, so that a supervisor (GKE's
podFailurePolicy, `launch.tpu run --supervise`) restarts it as a preemption instead of reading a finished run; the
same command resumes from the checkpoint. Multi-process: on Cloud TPU pass --distributed (JAX finds the cluster);
elsewhere --coordinator_address, --num_processes and --process_id.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from launch.cli import define_config_flag, fail, load_config, run

_CONFIG = define_config_flag("experiment config: configs/<name>.py[:arg]")
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics.jsonl and TensorBoard events go here")
_AOT_TOPOLOGY = flags.DEFINE_string("aot_topology", None, "compile the train step for this TPU topology (e.g. "
                                    "v5e:16x16) without running it, print per-device memory and whether it fits")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() with cluster auto-detection")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process without TPU)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (with --coordinator_address)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (with --coordinator_address)")

# 128 + the signal, as a shell reports a process that signal killed: not 0, which reads as a finished run.
STOPPED_EXIT_STATUS = {"preempted": 143, "interrupted": 130}  # SIGTERM, SIGINT (Ctrl-C)


def main() -> None:
  logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  config = load_config(_CONFIG)
  if config is None:
    fail("--config is required, e.g. --config=configs/pi.py:urpe")
  if _WORKDIR.value is None and _AOT_TOPOLOGY.value is None:
    fail("--workdir is required")

  import jax  # noqa: PLC0415

  from zoo import pretrained  # noqa: F401, PLC0415 — Hugging Face directories as train.init_from sources
  from zoo.data import TaskDataError  # noqa: PLC0415
  from zoo.train import aot, init_from, loop, workdir  # noqa: PLC0415
  from zoo.train.checkpoint import NoIntactCheckpoint  # noqa: PLC0415
  from zoo.train.options import parse_experiment  # noqa: PLC0415

  try:  # a fine-tune's model options come from its checkpoint before anything checks or compiles them
    config = init_from.fine_tune_config(config)
    experiment = parse_experiment(config)
  except ValueError as e:  # CheckpointError too: init_from names nothing loadable
    fail(str(e))
  if _AOT_TOPOLOGY.value:
    try:
      report = aot.fit_check(config, _AOT_TOPOLOGY.value)
    except ValueError as e:
      fail(str(e))
    print(aot.format_report(report), flush=True)
    return
  if _COORDINATOR.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()
  try:  # sizes that only the device count reveals (mesh, batch divisibility), and where the run writes
    experiment.check_devices(jax.device_count(), jax.process_count())
    workdir.resolve(_WORKDIR.value, experiment.train.log_dir)
  except ValueError as e:
    fail(str(e))
  try:
    summary = loop.train_and_evaluate(config, _WORKDIR.value)
  except (workdir.WorkdirError, NoIntactCheckpoint, TaskDataError, *init_from.ERRORS) as e:
    fail(str(e))
  except KeyboardInterrupt:  # before training started, or a second Ctrl-C during the save
    print("interrupted: Ctrl-C; stopped without a new checkpoint", file=sys.stderr, flush=True)
    sys.exit(130)
  except loop.NonFiniteLoss as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(1)
  if "stopped" in summary:
    sys.exit(STOPPED_EXIT_STATUS[summary["stopped"]])


if __name__ == "__main__":
  run(main)
