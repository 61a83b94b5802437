"""The gcloud command lines and worker shell scripts of the launcher, as pure functions.

Nothing here runs anything: each function returns an argv list (or the bash text one runs on the workers, built by
`remote.command`, every value in it quoted), so the tests compare them directly and `--dry_run` prints exactly what
a real run would execute.

On each worker a launch lives in `~/zoo_runs/<launch id>/` (the unpacked checkout, its venv, `train.log`, `pid`,
and `exit_status`); `~/zoo_runs/latest` points at the newest. Metrics and TensorBoard events go straight to the
`gs://` workdir (`train.log_dir` is left at its default, the workdir), so no log lives only on a VM.
The training process runs detached (`nohup setsid`), so a dropped ssh connection does not end it. When it ends —
finished, failed, or stopped by SIGTERM on a preemption — the worker copies its `train.log` (the process's output)
to `<workdir>/logs/<launch id>/<hostname>/` on GCS, so it outlives the VM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from launch.tpu import checks
from launch.tpu.manifest import MEGASCALE_PORT, RESTART_EXIT_CODES
from launch.tpu.remote import HOME, RUNS, Shell, command

TPUS = ("gcloud", "compute", "tpus")
# The workers' Python. The TPU VM runtime images are Ubuntu 22.04, whose python3 is 3.10, and zoo and jax need >= 3.11:
# the image's pip installs only uv (pinned with its hash), uv installs this CPython (its own managed build: no apt, no
# PPA, no unattended-upgrades lock on a fresh VM) and the venv, then exactly the versions and hashes of the lock file.
PYTHON = "3.11.18"
UV_LOCK = "launch/tpu/requirements-uv.txt"
TPU_LOCK = "launch/tpu/requirements-tpu.txt"
LIBTPU_LOCK = "/tmp/libtpu_lockfile"  # libtpu's: one process per TPU VM holds the chips
NOT_FOUND = "NOT_FOUND"  # in gcloud's error for a resource that does not exist: "(gcloud....describe) NOT_FOUND: ..."
TIERS = {"spot": ("--spot",), "reserved": ("--reserved",), "on-demand": ()}


@dataclasses.dataclass(frozen=True)
class Slice:
  """A TPU VM slice created through a queued resource of the same name; with `slices` > 1, that many slices joined
  over the data-center network (multislice), one TPU VM node each, named `<name>-0`, `<name>-1`, ..."""

  name: str
  zone: str
  project: str = ""
  slices: int = 1

  def __post_init__(self):
    checks.slice_location(self.name, self.zone, self.project)  # the name is a positional argument of gcloud
    checks.slice_count(self.slices)

  def where(self) -> list[str]:
    return [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])

  @property
  def nodes(self) -> list[str]:
    """The TPU VM nodes, slice 0 first: the queued resource's `--node-id`, or its `--node-prefix` and an index."""
    return [self.name] if self.slices == 1 else [f"{self.name}-{i}" for i in range(self.slices)]


def config_value(prop: str) -> list[str]:
  """Prints gcloud's configured `prop` (compute/zone, project), nothing when it is unset."""
  return ["gcloud", "config", "get-value", prop]


def create(tpu: Slice, accelerator: str, runtime: str, tier: str) -> list[str]:
  """Queues a request for the slice (or, multislice, for all its slices at once); `tier` is spot, reserved or
  on-demand."""
  nodes = [f"--node-id={tpu.name}"] if tpu.slices == 1 else [f"--node-count={tpu.slices}", f"--node-prefix={tpu.name}"]
  return [*TPUS, "queued-resources", "create", tpu.name, *nodes, f"--accelerator-type={accelerator}",
          f"--runtime-version={runtime}", *tpu.where(), *TIERS[tier]]


def coordinator_ip(tpu: Slice) -> list[str]:
  """Prints the internal IP address of worker 0 of slice 0, which coordinates a multislice run."""
  return [*TPUS, "tpu-vm", "describe", tpu.nodes[0], *tpu.where(), "--format=value(networkEndpoints[0].ipAddress)"]


def megascale_env(tpu: Slice, slice_id: int, coordinator: str) -> list[str]:
  """`NAME=VALUE` words of what libtpu needs to join slice `slice_id` to the others over DCN (as xpk and Google's
  multislice scripts set them on TPU VMs; GKE's JobSet sets the same, see manifest.py): nothing for one slice. With
  MEGASCALE_COORDINATOR_ADDRESS set, `jax.distributed.initialize()` also finds its coordinator on that host."""
  if tpu.slices == 1:
    return []
  return [f"MEGASCALE_COORDINATOR_ADDRESS={coordinator}:{MEGASCALE_PORT}", f"MEGASCALE_NUM_SLICES={tpu.slices}",
          f"MEGASCALE_SLICE_ID={slice_id}", f"MEGASCALE_PORT={MEGASCALE_PORT}"]


def describe(tpu: Slice) -> list[str]:
  """Prints the queued resource's state: WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE, SUSPENDED, FAILED, ..."""
  return [*TPUS, "queued-resources", "describe", tpu.name, *tpu.where(), "--format=value(state.state)"]


def delete(tpu: Slice) -> list[str]:
  """Deletes the queued resource and its TPU VMs (--force), without a prompt, and waits until it is gone."""
  return [*TPUS, "queued-resources", "delete", tpu.name, *tpu.where(), "--force", "--quiet"]


def scp_to_workers(tpu: Slice, node: str, local: str, remote: str) -> list[str]:
  return [*TPUS, "tpu-vm", "scp", local, f"{node}:{remote}", *tpu.where(), "--worker=all"]


def ssh(tpu: Slice, node: str, script: Shell) -> list[str]:
  """`script` runs in the shell of each worker of `node` (one of `tpu.nodes`): built by `remote.command`, every value
  in it quoted."""
  return [*TPUS, "tpu-vm", "ssh", node, *tpu.where(), "--worker=all", f"--command={script}"]


def shipped_files(repo: str) -> list[str]:
  """Lists (NUL-separated) the checkout's files that a launch ships: tracked ones as they are in the working tree and
  new ones git does not ignore (a config just written), but no venv, local data or caches that .gitignore names."""
  return ["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]


def pack(repo: str, archive: str, file_list: str) -> list[str]:
  """The files named in `file_list` (NUL-separated paths relative to `repo`) as a tarball, built locally once per
  launch."""
  return ["tar", "-C", repo, "--null", f"--files-from={file_list}", "-czf", archive]


def train_args(workdir: str, config: str, overrides: list[str], slices: int = 1) -> list[str]:
  """The arguments of `launch.train` on every worker (multislice: the mesh's DCN axis); the user's overrides last, so
  they win. `launch.tpu run` checks the config they make before any cloud call."""
  mesh = [f"--config.mesh.slices={slices}"] if slices > 1 else []
  return ["--distributed", f"--workdir={workdir}", f"--config={config}", *mesh, *overrides]


def start_script(launch_id: str, archive: str, train: list[str], workdir: str, env: Sequence[str] = ()) -> Shell:
  """Unpacks the launch's archive (`archive`: its file name in the worker's home directory), installs Python
  `PYTHON`, the locked tpu and gcs dependencies and zoo into the launch's venv with uv (see `PYTHON`), and starts
  `launch.train` with the arguments `train` (see `train_args`) and the `NAME=VALUE` words `env` in its environment,
  detached, once the TPU is free (`clear_tpu_script`). On a worker where this launch already started (a retry after
  an ssh session that dropped) it only removes the archive: never two trainers.

  The job's bash traps SIGTERM (a trap with a command, so the Python child gets the default disposition and
  saves a checkpoint): on a preemption it outlives the trainer long enough to record the exit status and copy the
  logs to the workdir.
  """
  run = job_dir(launch_id)
  job = command("trap : TERM; cd {run} && {env}.venv/bin/python -m launch.train {train} > {run}/train.log 2>&1; "
                "echo $? > {run}/exit_status; gcloud storage cp {run}/train.log {logs}/\"$(hostname)\"/",
                run=run, env=command("env {env} ", env=env) if env else Shell(""), train=train,
                logs=f"{workdir.rstrip('/')}/logs/{launch_id}")
  return command("set -e; if [ -f {run}/pid ]; then rm -f {home}/{archive}; exit 0; fi; "
                 "mkdir -p {run}; tar -C {run} -xzf {home}/{archive}; rm {home}/{archive}; cd {run}; "
                 "python3 -m pip install -q --user --require-hashes -r {uv_lock}; "
                 "export PATH={home}/.local/bin:\"$PATH\"; uv python install -q {python}; "
                 "uv venv -q --python {python} .venv; "
                 "uv pip install -q --python .venv/bin/python --require-hashes -r {lock}; "
                 "uv pip install -q --python .venv/bin/python --no-deps -e .; ln -sfn {run} {runs}/latest; {clear}; "
                 "nohup setsid bash -c {job} > /dev/null 2>&1 < /dev/null & echo $! > {run}/pid",
                 run=run, home=HOME, archive=archive, uv_lock=UV_LOCK, python=PYTHON, lock=TPU_LOCK, runs=RUNS,
                 clear=clear_tpu_script(), job=str(job))  # str: the job is one word


def clear_tpu_script() -> Shell:
  """Frees the worker's TPU for a new trainer, as MaxText's runner does: a process still holding a TPU device (an
  earlier launch's trainer, a notebook, a crashed run's orphan) gets SIGKILL and is waited for, and libtpu's lock file
  of a process that died without removing it goes. Otherwise the new trainer fails at start with "TPU in use" or
  waits on the lock. Each process it kills is named in the start's output."""
  return command('for p in $(sudo lsof -t {devices} 2>/dev/null | sort -u); do echo "$(hostname): killing $p, which '
                 'holds the TPU"; sudo kill -9 "$p" || true; timeout 30 tail --pid="$p" -f /dev/null || true; done; '
                 'sudo rm -f {lock}', devices=Shell("/dev/accel* /dev/vfio/*"), lock=LIBTPU_LOCK)


def job_dir(launch_id: str) -> Shell:
  """A launch's directory on a worker; "" = the latest launch."""
  return command("{runs}/{id}", runs=RUNS, id=launch_id or "latest")


def status_script(launch_id: str = "") -> Shell:
  """One line per worker, `<hostname> <state>`: running; finished / exited (exit 0, with the final summary that
  process 0 prints / on another worker); stopped (exit 143 after SIGTERM with a checkpoint saved: process 0 says so);
  killed <exit status> (one of `RESTART_EXIT_CODES` otherwise: another worker's SIGTERM stop, a SIGKILL) — both
  restarted as a preemption, as GKE's podFailurePolicy restarts them; failed <exit status>; lost (the process is
  gone without an exit status); missing (no such launch here, e.g. on a re-created VM)."""
  return command('d={run}; if [ ! -f "$d"/pid ]; then s=missing; '
                 'elif [ ! -f "$d"/exit_status ]; then if kill -0 "$(cat "$d"/pid)" 2>/dev/null; then s=running; '
                 'else s=lost; fi; '
                 'else e="$(cat "$d"/exit_status)"; case "$e" in '
                 '0) if grep -q \'^summary:\' "$d"/train.log; then s=finished; else s=exited; fi;; '
                 '{restart}) if grep -q \'^preempted:\' "$d"/train.log; then s=stopped; else s="killed $e"; fi;; '
                 '*) s="failed $e";; esac; fi; '
                 'echo "$(hostname) $s"', run=job_dir(launch_id),
                 restart=Shell("|".join(map(str, RESTART_EXIT_CODES))))


def logs_script(launch_id: str = "", lines: int = 50, follow: bool = False) -> Shell:
  """The last `lines` lines of each worker's train.log, prefixed with its hostname; with `follow`, then every new
  line as it is written (until Ctrl-C; `tail -F` follows a log that appears later too)."""
  if follow:
    return command('tail -n {lines} -F {run}/train.log | sed -u "s/^/$(hostname): /"', lines=lines,
                   run=job_dir(launch_id))
  return command('tail -n {lines} {run}/train.log | sed "s/^/$(hostname): /"', lines=lines, run=job_dir(launch_id))


def stop_script(launch_id: str = "") -> Shell:
  """SIGTERM to the job's process group: the trainer saves a checkpoint at the next step and exits 143. Says what it
  did on each worker, and exits 0 where there is nothing to stop (no such launch, already ended): stopping twice is
  no error."""
  return command('d={run}; if [ ! -f "$d"/pid ]; then s="no such launch"; '
                 'elif [ -f "$d"/exit_status ] || ! kill -0 "$(cat "$d"/pid)" 2>/dev/null; then s="not running"; '
                 'else kill -TERM -- -"$(cat "$d"/pid)"; s=stopping; fi; echo "$(hostname) $s"',
                 run=job_dir(launch_id))
