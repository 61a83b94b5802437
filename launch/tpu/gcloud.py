"""The gcloud command lines and worker shell scripts of the launcher, as pure functions.

Nothing here runs anything: each function returns an argv list (or the bash text one runs on the workers), so the
tests compare them directly and `--dry-run` prints exactly what a real run would execute.

On each worker a launch lives in `~/zoo_runs/<launch id>/` (the unpacked checkout, its venv, `train.log`, `pid`,
`exit_status`, and `logs/` for metrics, TensorBoard events and profiles); `~/zoo_runs/latest` points at the newest.
The training process runs detached (`nohup setsid`), so a dropped ssh connection does not end it. When it ends —
finished, failed, or stopped by SIGTERM on a preemption — the worker copies `train.log` and `logs/` to
`<workdir>/logs/<launch id>/<hostname>/` on GCS, so the logs outlive the VM.
"""

from __future__ import annotations

import dataclasses
import shlex

TPUS = ("gcloud", "compute", "tpus")
TIERS = {"spot": ("--spot",), "reserved": ("--reserved",), "on-demand": ()}
RUNS = "$HOME/zoo_runs"


@dataclasses.dataclass(frozen=True)
class Slice:
  """A TPU VM slice created through a queued resource of the same name."""

  name: str
  zone: str
  project: str = ""

  def where(self) -> list[str]:
    return [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])


def create(tpu: Slice, accelerator: str, runtime: str, tier: str) -> list[str]:
  """Queues a request for the slice; `tier` is spot, reserved or on-demand."""
  return [*TPUS, "queued-resources", "create", tpu.name, f"--node-id={tpu.name}", f"--accelerator-type={accelerator}",
          f"--runtime-version={runtime}", *tpu.where(), *TIERS[tier]]


def describe(tpu: Slice) -> list[str]:
  """Prints the queued resource's state: WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE, SUSPENDED, FAILED, ..."""
  return [*TPUS, "queued-resources", "describe", tpu.name, *tpu.where(), "--format=value(state.state)"]


def delete(tpu: Slice) -> list[str]:
  """Deletes the queued resource and its TPU VMs (--force), without a prompt, and waits until it is gone."""
  return [*TPUS, "queued-resources", "delete", tpu.name, *tpu.where(), "--force", "--quiet"]


def scp_to_workers(tpu: Slice, local: str, remote: str) -> list[str]:
  return [*TPUS, "tpu-vm", "scp", local, f"{tpu.name}:{remote}", *tpu.where(), "--worker=all"]


def ssh(tpu: Slice, command: str, worker: str = "all") -> list[str]:
  return [*TPUS, "tpu-vm", "ssh", tpu.name, *tpu.where(), f"--worker={worker}", f"--command={command}"]


def pack(repo: str, archive: str) -> list[str]:
  """The checkout as a tarball (no venv, git history or caches), built locally once per launch."""
  return ["tar", "-C", repo, "--exclude=.venv", "--exclude=.git", "--exclude=__pycache__", "-czf", archive, "."]


def start_script(launch_id: str, archive: str, config: str, overrides: list[str], workdir: str) -> str:
  """Unpacks the launch's archive (`archive`: its file name in the worker's home directory), installs zoo with the
  tpu and gcs extras, and starts training detached.

  The job's bash traps SIGTERM (a trap with a command, so the Python child gets the default disposition and
  saves a checkpoint): on a preemption it outlives the trainer long enough to record the exit status and copy the
  logs to the workdir.
  """
  run = f"{RUNS}/{launch_id}"
  train = shlex.join([".venv/bin/python", "-m", "launch.train", "--distributed", f"--workdir={workdir}",
                      f"--config={config}", "--config.train.log_dir=logs", *overrides])  # logs: in the launch dir
  logs = f"{workdir.rstrip('/')}/logs/{launch_id}/$(hostname)"
  job = (f"trap : TERM; cd {run} && {train} > {run}/train.log 2>&1; echo $? > {run}/exit_status; "
         f"gcloud storage cp -r {run}/train.log {run}/logs {logs}/")
  return "; ".join([
      "set -e",
      f"mkdir -p {run}",
      f"tar -C {run} -xzf $HOME/{archive}",
      f"rm $HOME/{archive}",
      f"cd {run}",
      "python3 -m venv .venv",
      ".venv/bin/pip install -q -e '.[tpu,gcs]'",
      f"ln -sfn {run} {RUNS}/latest",
      f"nohup setsid bash -c {shlex.quote(job)} > /dev/null 2>&1 < /dev/null & echo $! > {run}/pid",
  ])


def job_dir(launch_id: str) -> str:
  return f"{RUNS}/{launch_id or 'latest'}"


def status_script(launch_id: str = "") -> str:
  """One line per worker, `<hostname> <state>`: running; finished / stopped (exit 0 with the final summary / after
  SIGTERM with a checkpoint saved: process 0 prints which); exited (exit 0 on another worker); failed <exit status>;
  lost (the process is gone without an exit status); missing (no such launch here, e.g. on a re-created VM)."""
  run = job_dir(launch_id)
  return (f"d={run}; if [ ! -f $d/pid ]; then s=missing; "
          f"elif [ ! -f $d/exit_status ]; then if kill -0 $(cat $d/pid) 2>/dev/null; then s=running; else s=lost; fi; "
          f"elif [ $(cat $d/exit_status) != 0 ]; then s=\"failed $(cat $d/exit_status)\"; "
          f"elif grep -q '^summary:' $d/train.log; then s=finished; elif grep -q '^preempted:' $d/train.log; "
          f"then s=stopped; else s=exited; fi; echo \"$(hostname) $s\"")


def logs_script(launch_id: str = "", lines: int = 50) -> str:
  """The last `lines` lines of each worker's train.log, prefixed with its hostname."""
  return f"tail -n {lines} {job_dir(launch_id)}/train.log | sed \"s/^/$(hostname): /\""


def stop_script(launch_id: str = "") -> str:
  """SIGTERM to the job's process group: the trainer saves a checkpoint at the next step and exits 0."""
  return f"kill -TERM -- -$(cat {job_dir(launch_id)}/pid)"
