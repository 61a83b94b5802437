r"""Cloud TPU from this checkout: create a slice, train on it detached, read its logs, survive preemptions; or write
a JobSet for GKE.

  python -m launch.tpu create NAME --zone=ZONE --accelerator=v5litepod-16 --runtime=v2-alpha-tpuv5-lite [--spot]
  python -m launch.tpu run NAME --zone=ZONE --workdir=gs://BUCKET/RUN --config=configs/pi.py:urpe [--config.x=y ...]
  python -m launch.tpu run ... --supervise --accelerator=... --runtime=... --spot [--max_attempts=5 --poll=60]
  python -m launch.tpu status|logs|stop|delete NAME --zone=ZONE
  python -m launch.tpu create|run|status|logs|stop|delete NAME ... --slices=2   # multislice: nodes NAME-0, NAME-1
  python -m launch.tpu image build|push --image=REGISTRY/PATH:TAG
  python -m launch.tpu manifest --name=RUN --image=IMAGE --accelerator=tpu-v5-lite-podslice --topology=4x4 \
      --slices=2 --workdir=gs://BUCKET/RUN --config=configs/pi.py:urpe [--out=jobset.yaml --apply]

Every value is checked here before any cloud call: names, zone and project, launch ids, the `gs://` workdir, and the
experiment config with its overrides exactly as `launch.train` checks it (one `error:` line, exit status 2); every
value that reaches a worker's shell is quoted (remote.py). The verb comes first, then its operand (the slice NAME,
or build|push), and the flags in any order; a flag the verb does not take is refused (`--help` names each flag's
verbs). Every verb takes --dry_run: it prints each command it would run (one per line) and runs none. Slices are
queued resources (`--spot`, `--reserved` or on-demand); `run` copies the checkout to every worker as a per-launch
archive, installs `.[tpu,gcs]` and starts `launch.train --distributed` detached on all workers (see gcloud.py for
where logs go). `--slices=N` (on every slice command, the same each time) makes it multislice: one queued resource
of N nodes NAME-0 ... NAME-<N-1>, each worker started with its slice's MEGASCALE settings (worker 0 of NAME-0
coordinates) and `--config.mesh.slices=N`. `run --supervise` stays in the foreground, polls the slice every --poll
seconds and, when it is preempted or gone, deletes and re-creates it and relaunches the same command, which resumes
from the workdir's latest checkpoint; after --max_attempts launches it gives up. --zone and --project default to
gcloud's (`gcloud config set compute/zone ...`).
Needs the gcloud CLI (docker for `image`, kubectl for `manifest --apply`).
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import SimpleNamespace

import yaml
from absl import flags

from launch.cli import fail, parse_verb_line
from launch.tpu import checks, gcloud, image
from launch.tpu.manifest import JobSpec, container_args, jobset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOST = ("SUSPENDING", "SUSPENDED", "FAILED", "DELETING", "")  # "" = no such queued resource


class Runner:
  """Runs commands, echoing each to stderr; with `dry_run` prints each to stdout instead, runs none and does not
  wait between polls. A command that may fail for a moment (ssh, scp, a describe) is tried `retries` more times,
  after `retry_wait` seconds, doubling each time."""

  def __init__(self, dry_run: bool, retries: int, retry_wait: float):
    self.dry_run, self.retries, self.retry_wait = dry_run, retries, retry_wait

  def run(self, argv: list[str]) -> None:
    """Runs `argv`; a failure ends the launcher with one line (exit status 1)."""
    if status := self.attempt(argv):
      print(f"error: {' '.join(argv[:5])} ... failed with exit status {status}", file=sys.stderr)
      sys.exit(1)

  def run_all(self, argvs: list[list[str]]) -> None:
    """Runs the commands side by side (one per slice: `logs --follow` never ends) and waits for all; a failure ends
    the launcher with one line (exit status 1)."""
    if self.dry_run:
      for argv in argvs:
        print(shlex.join(argv), flush=True)
      return
    for argv in argvs:
      print(f"+ {shlex.join(argv)}", file=sys.stderr, flush=True)
    processes = [subprocess.Popen(argv) for argv in argvs]
    if failed := [(argv, status) for argv, p in zip(argvs, processes) if (status := p.wait())]:
      argv, status = failed[0]
      print(f"error: {' '.join(argv[:6])} ... failed with exit status {status}", file=sys.stderr)
      sys.exit(1)

  def attempt(self, argv: list[str]) -> int:
    """Runs `argv`: its exit status (0 in a dry run), for the caller to decide what a failure means."""
    if self.dry_run:
      print(shlex.join(argv), flush=True)
      return 0
    print(f"+ {shlex.join(argv)}", file=sys.stderr, flush=True)
    return subprocess.run(argv).returncode

  def capture(self, argv: list[str], dry_value: str) -> subprocess.CompletedProcess:
    """Runs `argv` with its output captured, for the caller to read; in a dry run, `dry_value` as its stdout."""
    if self.dry_run:
      print(shlex.join(argv), flush=True)
      return subprocess.CompletedProcess(argv, 0, dry_value, "")
    return subprocess.run(argv, capture_output=True, text=True)

  def output(self, argv: list[str], dry_value: str) -> str:
    """The command's stdout, stripped; "" when it fails (no worker answered ssh); `dry_value` in a dry run."""
    result = self.capture(argv, dry_value)
    return result.stdout.strip() if result.returncode == 0 else ""

  def backoff(self, retry: int, what: str) -> None:
    """Says that `what` failed and waits before retry number `retry` + 1."""
    wait = self.retry_wait * 2**retry
    print(f"{what}; trying again in {wait:g} s (retry {retry + 1} of {self.retries})", file=sys.stderr, flush=True)
    self.sleep(wait)

  def sleep(self, seconds: float) -> None:
    if not self.dry_run:
      time.sleep(seconds)


def state(runner: Runner, tpu: gcloud.Slice) -> str:
  """The queued resource's state; "" when there is no such queued resource (gcloud says NOT_FOUND). Any other failure
  of the describe (the network, an expired token, a 5xx) says nothing about the slice: it is tried again, and when it
  still fails it ends the launcher with one line instead of being read as a slice that is gone."""
  retry = 0
  while (result := runner.capture(gcloud.describe(tpu), dry_value="ACTIVE")).returncode:
    if gcloud.NOT_FOUND in result.stderr:
      return ""
    reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    if retry == runner.retries:
      print(f"error: could not read the state of {tpu.name} after {retry + 1} tries: {reason}", file=sys.stderr)
      sys.exit(1)
    runner.backoff(retry, f"{tpu.name}: describing the queued resource failed ({reason})")
    retry += 1
  return result.stdout.strip()


def wait_until_active(runner: Runner, tpu: gcloud.Slice, poll: float) -> None:
  """Polls the queued resource until ACTIVE; a request that fails or disappears ends the launcher."""
  last = None
  while (current := state(runner, tpu)) != "ACTIVE":
    if current in LOST:
      print(f"error: queued resource {tpu.name} is {current or 'gone'} while waiting for it to become ACTIVE",
            file=sys.stderr)
      sys.exit(1)
    if current != last:
      print(f"{tpu.name}: {current}", file=sys.stderr, flush=True)
      last = current
    runner.sleep(poll)
  print(f"{tpu.name}: ACTIVE", file=sys.stderr, flush=True)


def delete(runner: Runner, tpu: gcloud.Slice, current: str, poll: float) -> None:
  """Deletes the queued resource (in state `current`) and waits until it is gone; one already gone or being deleted
  is no error."""
  if current == "DELETING":
    print(f"{tpu.name}: already being deleted", file=sys.stderr, flush=True)
    while state(runner, tpu):
      runner.sleep(poll)
  elif current:
    runner.run(gcloud.delete(tpu))
  else:
    print(f"{tpu.name}: no such queued resource (already deleted)", file=sys.stderr, flush=True)


def create(runner: Runner, tpu: gcloud.Slice, args: SimpleNamespace) -> None:
  runner.run(gcloud.create(tpu, args.accelerator, args.runtime, args.tier))
  wait_until_active(runner, tpu, args.poll)


def multislice_coordinator(runner: Runner, tpu: gcloud.Slice) -> str:
  """The internal IP address of worker 0 of slice 0 ("" for one slice); one line (exit status 1) when gcloud does not
  say it."""
  if tpu.slices == 1:
    return ""
  address = runner.output(gcloud.coordinator_ip(tpu), dry_value="WORKER-0-IP")
  if not runner.dry_run:
    try:
      checks.coordinator_ip(address)
    except ValueError as e:
      print(f"error: {tpu.nodes[0]}: {e}", file=sys.stderr)
      sys.exit(1)
  return address


def copy_and_start(runner: Runner, tpu: gcloud.Slice, starts: list[tuple[str, list[str]]], local: str,
                   archive: str) -> int:
  """Copies the archive to every worker of each node and runs the node's start command: the first failure's exit
  status, 0 when all succeeded."""
  for node, start in starts:
    if status := runner.attempt(gcloud.scp_to_workers(tpu, node, local, archive)) or runner.attempt(start):
      return status
  return 0


def launch(runner: Runner, tpu: gcloud.Slice, args: SimpleNamespace) -> str | None:
  """Copies the checkout to every worker under a new launch id and starts training there, detached; None when the
  copy or the start still fails after --retries more tries (a slice lost meanwhile, a network that stays down).

  A failed try is repeated whole, copy and start, after --retry_wait seconds, doubling each time: the start script
  does nothing on a worker where the launch already started (an ssh session that dropped after the start)."""
  launch_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
  archive = f"zoo-{launch_id}.tgz"
  local = os.path.join(tempfile.gettempdir(), f"{tpu.name}-{archive}")
  file_list = f"{local}.files"
  files = runner.output(gcloud.shipped_files(REPO), dry_value="")
  if not (files or runner.dry_run):
    fail(f"run: ships the git checkout's files, but `git ls-files` found none in {REPO}")
  try:
    if not runner.dry_run:
      with open(file_list, "w") as f:  # paths that no longer exist (deleted, not yet committed) are not shipped
        f.write("\0".join(p for p in files.split("\0") if p and os.path.lexists(os.path.join(REPO, p))))
    runner.run(gcloud.pack(REPO, local, file_list))
    train = gcloud.train_args(args.workdir, args.config, args.overrides, tpu.slices)
    coordinator = multislice_coordinator(runner, tpu)
    starts = [(node, gcloud.ssh(tpu, node, gcloud.start_script(launch_id, archive, train, args.workdir,
                                                               gcloud.megascale_env(tpu, i, coordinator))))
              for i, node in enumerate(tpu.nodes)]
    for retry in range(runner.retries + 1):
      if not (status := copy_and_start(runner, tpu, starts, local, archive)):
        break
      if retry == runner.retries:
        return None
      runner.backoff(retry, f"{tpu.name}: copying or starting {launch_id} failed (exit status {status})")
  finally:
    for path in (local, file_list):
      if os.path.exists(path):
        os.remove(path)
  print(f"launched {launch_id} on {tpu.name}: `python -m launch.tpu logs {tpu.name} --zone={tpu.zone}` follows it; "
        f"metrics go to {args.workdir}, each worker's train.log to {args.workdir.rstrip('/')}/logs/{launch_id}/ when "
        f"it ends", file=sys.stderr, flush=True)
  return launch_id


def job_state(runner: Runner, tpu: gcloud.Slice, launch_id: str) -> str:
  """The launch's state over all workers: failed N if any failed, running while any runs, then what process 0 said
  (finished or stopped), otherwise killed (by a signal), missing or lost; unreachable when ssh fails (the next poll
  asks again)."""
  answers = [runner.output(gcloud.ssh(tpu, node, gcloud.status_script(launch_id)), dry_value="worker finished")
             for node in tpu.nodes]
  if not all(answers):
    return "unreachable"
  states = [line.split(" ", 1)[1] for answer in answers for line in answer.splitlines() if " " in line]
  failed = [s for s in states if s.startswith("failed")]
  if failed:
    return failed[0]
  kinds = {s.split()[0] for s in states}
  return next((s for s in ("running", "finished", "stopped", "killed", "missing") if s in kinds), "lost")


def watch(runner: Runner, tpu: gcloud.Slice, launch_id: str, args: SimpleNamespace) -> tuple[str, str]:
  """Polls the slice and the job until the job is no longer running: (the slice's state, the job's). A slice that
  stays ACTIVE while no worker answers ssh for more than --unreachable_after seconds ends the launcher (exit 1)."""
  unreachable_since = None
  while True:
    runner.sleep(args.poll)
    current = state(runner, tpu)
    job = "lost with the slice" if current != "ACTIVE" else job_state(runner, tpu, launch_id)
    if job == "unreachable":
      unreachable_since = unreachable_since or time.monotonic()
      if time.monotonic() - unreachable_since > args.unreachable_after:
        print(f"error: supervise: no worker of {tpu.name} answered ssh for {args.unreachable_after:g} s while the "
              f"slice is ACTIVE; gave up watching {launch_id}, which may still run: see `python -m launch.tpu "
              f"status {tpu.name} --zone={tpu.zone}`", file=sys.stderr)
        sys.exit(1)
    elif job != "running":
      return current, job
    else:
      unreachable_since = None


def supervise(runner: Runner, tpu: gcloud.Slice, args: SimpleNamespace) -> None:
  """Launches, then polls the slice and the job; re-creates and relaunches after a preemption (the queued resource
  SUSPENDING, SUSPENDED, FAILED or gone) or a launch that could not be copied or started, at most --max_attempts
  launches in all."""
  for attempt in range(1, args.max_attempts + 1):
    current = state(runner, tpu)
    if current != "ACTIVE":
      if current:
        delete(runner, tpu, current, args.poll)
      create(runner, tpu, args)
    launch_id = launch(runner, tpu, args)
    if launch_id is None:
      current, job = state(runner, tpu), "not started"
    else:
      current, job = watch(runner, tpu, launch_id, args)
    if job == "finished":
      print(f"supervise: {launch_id} finished (attempt {attempt})", file=sys.stderr, flush=True)
      return
    if job.startswith("failed"):
      print(f"error: supervise: training failed with exit status {job.split()[1]} on {tpu.name}; not relaunching: "
            f"see `python -m launch.tpu logs {tpu.name} --zone={tpu.zone}`", file=sys.stderr)
      sys.exit(1)
    print(f"supervise: slice {tpu.name} is {current or 'gone'}, job {job} (attempt {attempt} of "
          f"{args.max_attempts})", file=sys.stderr, flush=True)
  print(f"error: supervise: gave up after {args.max_attempts} attempts (the slice or job was lost each time); the "
        f"checkpoints stay in {args.workdir}: rerun the same command to continue", file=sys.stderr)
  sys.exit(1)


def run(runner: Runner, tpu: gcloud.Slice, args: SimpleNamespace) -> None:
  if args.supervise:
    supervise(runner, tpu, args)
    return
  current = state(runner, tpu)
  if current != "ACTIVE":
    fail(f"run: slice {tpu.name} is {current or 'not there'}; create it first (python -m launch.tpu create ...) or "
         f"pass --supervise")
  if launch(runner, tpu, args) is None:
    print(f"error: run: could not copy or start the launch on {tpu.name} after {runner.retries + 1} tries",
          file=sys.stderr)
    sys.exit(1)


def manifest(runner: Runner, spec: JobSpec, args: SimpleNamespace) -> None:
  text = yaml.safe_dump(jobset(spec), sort_keys=False)
  if not args.out:
    if args.apply:
      fail("manifest --apply needs --out=FILE (the file kubectl applies)")
    print(text, end="")
    return
  if not runner.dry_run:
    with open(args.out, "w") as f:
      f.write(text)
  print(f"{'would write' if runner.dry_run else 'wrote'} {args.out}: {spec.slices} × {spec.topology} "
        f"{spec.accelerator} ({spec.vms} pods per slice)", file=sys.stderr)
  if args.apply:
    runner.run(["kubectl", "apply", "-f", args.out])


SLICE_VERBS = ("create", "run", "status", "logs", "stop", "delete")  # each takes the slice NAME first
VERBS = {"create": "queue a slice, wait for ACTIVE", "run": "copy, install, start training detached",
         "status": "the slice's state and the job's on every worker", "logs": "the end of every worker's train.log",
         "stop": "SIGTERM to the job: it saves a checkpoint and exits 143",
         "delete": "delete the queued resource and its TPU VMs", "image": "build or push the training image (docker)",
         "manifest": "a JobSet for GKE (kubectl apply -f)"}
OPERANDS = {**{verb: "the slice NAME" for verb in SLICE_VERBS}, "image": "build or push", "manifest": ""}
REQUIRED = {"run": ("workdir", "config"), "image": ("image",),
            "manifest": ("name", "image", "accelerator", "topology", "workdir", "config")}
# The launcher's own flags, apart from absl's global ones: the tests call `main` again and again in a process that
# imports other commands, some with flags of the same names (--out, --workdir, --config).
FLAGS = flags.FlagValues()
TAKEN_BY: dict[str, tuple[str, ...]] = {}  # flag name: the verbs that take it


def define(kind: Callable[..., flags.FlagHolder], name: str, default: object, help_string: str,
           verbs: tuple[str, ...]) -> None:
  """A flag of `verbs` only: its help names them, `parse` refuses it with any other verb."""
  TAKEN_BY[name] = verbs
  kind(name, default, f"{help_string} [{', '.join(verbs)}]", flag_values=FLAGS)


define(flags.DEFINE_bool, "dry_run", False, "print every command, run none", tuple(VERBS))
define(flags.DEFINE_string, "zone", "", "default: gcloud's (gcloud config set compute/zone ZONE)", SLICE_VERBS)
define(flags.DEFINE_string, "project", "", "default: gcloud's (gcloud config set project PROJECT)", SLICE_VERBS)
define(flags.DEFINE_integer, "slices", 1, "slices joined over DCN (multislice): one queued resource with nodes NAME-0, "
       "NAME-1, ... (manifest: one Job per slice)", (*SLICE_VERBS, "manifest"))
define(flags.DEFINE_integer, "retries", 3, "more tries of a failed copy, start or describe", SLICE_VERBS)
define(flags.DEFINE_float, "retry_wait", 15.0, "seconds before the first retry, doubling", SLICE_VERBS)
define(flags.DEFINE_string, "accelerator", None, "create, run: a TPU type, e.g. v5litepod-16, v5p-32, v4-32, v6e-16; "
       "manifest: GKE's label, e.g. tpu-v5-lite-podslice", ("create", "run", "manifest"))
define(flags.DEFINE_string, "runtime", None, "TPU VM runtime version, e.g. v2-alpha-tpuv5-lite, v2-alpha-tpuv5",
       ("create", "run"))
define(flags.DEFINE_bool, "spot", False, "Spot VMs: cheap, preemptible (default: on-demand)", ("create", "run"))
define(flags.DEFINE_bool, "reserved", False, "your reservation (default: on-demand)", ("create", "run"))
define(flags.DEFINE_float, "poll", 60.0, "seconds between state checks", ("create", "run", "delete"))
define(flags.DEFINE_string, "workdir", None, "gs://... : checkpoints (and copies of the logs)", ("run", "manifest"))
define(flags.DEFINE_string, "config", None, "experiment config, e.g. configs/pi.py:urpe; --config.x=y overrides "
       "after it go to launch.train", ("run", "manifest"))
define(flags.DEFINE_bool, "supervise", False, "stay, re-create and relaunch after preemptions", ("run",))
define(flags.DEFINE_integer, "max_attempts", 5, "launches in all before --supervise gives up", ("run",))
define(flags.DEFINE_float, "unreachable_after", 1800.0, "seconds without ssh to an ACTIVE slice before --supervise "
       "gives up", ("run",))
define(flags.DEFINE_string, "launch", "", "a launch id (default: the latest on the workers)", ("status", "logs", "stop"))
define(flags.DEFINE_integer, "lines", 50, "lines of each worker's train.log", ("logs",))
define(flags.DEFINE_bool, "follow", False, "then print new lines until Ctrl-C", ("logs",))
define(flags.DEFINE_string, "image", None, "a container image with this checkout and .[tpu,gcs], e.g. "
       "europe-docker.pkg.dev/PROJECT/REPO/train:TAG", ("image", "manifest"))
define(flags.DEFINE_string, "name", None, "the JobSet name (a DNS label)", ("manifest",))
define(flags.DEFINE_string, "topology", None, "of one slice, e.g. 4x4", ("manifest",))
define(flags.DEFINE_integer, "max_restarts", 3, "JobSet restarts (preemptions) allowed", ("manifest",))
define(flags.DEFINE_integer, "ttl", 7 * 24 * 3600, "seconds a finished JobSet is kept", ("manifest",))
define(flags.DEFINE_string, "queue", "", "a Kueue LocalQueue to submit to (default: no Kueue)", ("manifest",))
define(flags.DEFINE_string, "out", "", "write the manifest here instead of stdout", ("manifest",))
define(flags.DEFINE_bool, "apply", False, "then kubectl apply -f OUT", ("manifest",))


def parse(argv: list[str]) -> SimpleNamespace:
  """The command line after `python -m launch.tpu`: the verb, its operand (`name` or `action`), every flag by name,
  `tier` and the `--config.x=y` overrides, which pass through to launch.train after --config (not flags of this
  program). Refuses, with one line, a flag the verb does not take and a required one left out."""
  overrides = [arg for arg in argv if arg.startswith("--config.")]
  listed = "\n".join(f"  {verb:9} {what}" for verb, what in VERBS.items())
  arguments = parse_verb_line(["python -m launch.tpu", *(arg for arg in argv if arg not in overrides)],
                              f"{__doc__}\nThe verbs:\n{listed}\n", FLAGS)
  if not arguments or arguments[0] not in VERBS:
    fail(f"{f'unknown verb {arguments[0]!r}' if arguments else 'no verb'}; the verbs: {', '.join(VERBS)}")
  verb, *operands = arguments
  for name, verbs in TAKEN_BY.items():
    if FLAGS[name].present and verb not in verbs:
      fail(f"{verb} does not take --{name} (only {', '.join(verbs)})")
  if overrides and verb not in ("run", "manifest"):
    fail(f"{verb} takes no config overrides, got {' '.join(overrides)}")
  if len(operands) != (1 if OPERANDS[verb] else 0) or (verb == "image" and operands[0] not in ("build", "push")):
    fail(f"{verb} takes {OPERANDS[verb] or 'no arguments'}, got {shlex.join(operands) or 'none'}")
  if missing := [f"--{name}" for name in REQUIRED.get(verb, ()) if FLAGS[name].value is None]:
    fail(f"{verb}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
  args = SimpleNamespace(verb=verb, overrides=overrides, **FLAGS.flag_values_dict())
  if verb in SLICE_VERBS:
    args.name = operands[0]
  args.action = operands[0] if verb == "image" else None
  if args.spot and args.reserved:
    fail("give at most one of --spot and --reserved")
  args.tier = "spot" if args.spot else "reserved" if args.reserved else "on-demand"
  if verb == "create" and not (args.accelerator and args.runtime):
    fail("create: --accelerator and --runtime are required")
  if verb == "run" and args.supervise and not (args.accelerator and args.runtime):
    fail("run --supervise: --accelerator and --runtime are required (to re-create the slice after a preemption)")
  return args


def gcloud_default(prop: str, flag: str, placeholder: str) -> str:
  """gcloud's configured `prop`, for a --`flag` left out: read from the local gcloud config (no cloud call, so also in
  --dry_run, whose commands name it). One line (exit status 2) when it is not set either."""
  how = f"pass --{flag}={placeholder} or set gcloud's default: gcloud config set {prop} {placeholder}"
  try:
    result = subprocess.run(gcloud.config_value(prop), capture_output=True, text=True)
  except FileNotFoundError:
    fail(f"no --{flag}, and no gcloud CLI to read its default from: {how}")
  if result.returncode or not (value := result.stdout.strip()):
    fail(f"no --{flag}, and gcloud has no default {flag}: {how}")
  return value


def checked(args: SimpleNamespace) -> gcloud.Slice | JobSpec:
  """The slice (or the JobSet spec) once every user value is checked, the experiment config included — before any
  cloud call, so a typo fails here with one line instead of on a billed slice after a pack, a copy and an install."""
  try:
    if args.verb == "manifest":
      spec = JobSpec(name=args.name, image=args.image, accelerator=args.accelerator, topology=args.topology,
                     slices=args.slices, workdir=args.workdir, config=args.config, overrides=tuple(args.overrides),
                     max_restarts=args.max_restarts, ttl_seconds=args.ttl, queue=args.queue)
      checks.experiment(container_args(spec))
      return spec
    zone = args.zone or gcloud_default("compute/zone", "zone", "ZONE")
    project = args.project or gcloud_default("project", "project", "PROJECT")
    tpu = gcloud.Slice(args.name, zone, project, args.slices)
    for what in ("accelerator", "runtime"):
      if getattr(args, what):
        checks.gcloud_value(getattr(args, what), f"--{what}")
    checks.launch_id(args.launch)
    if args.verb == "run":
      checks.gcs_workdir(args.workdir, "run: --workdir")
      checks.config_args(args.config, args.overrides)
      checks.experiment(gcloud.train_args(args.workdir, args.config, args.overrides, tpu.slices))
    return tpu
  except ValueError as e:
    fail(str(e))


def main(argv: list[str]) -> None:
  """Runs the command line after `python -m launch.tpu` (the tests call it in-process)."""
  args = parse(argv)
  runner = Runner(args.dry_run, args.retries, args.retry_wait)  # image and manifest retry nothing
  if args.verb == "manifest":
    manifest(runner, checked(args), args)
    return
  if args.verb == "image":
    try:
      checks.image(args.image)
    except ValueError as e:
      fail(str(e))
    runner.run(image.build(REPO, args.image) if args.action == "build" else image.push(args.image))
    return
  tpu = checked(args)
  if args.verb == "create":
    create(runner, tpu, args)
  elif args.verb == "run":
    run(runner, tpu, args)
  elif args.verb == "status":
    current = state(runner, tpu)
    jobs = [runner.output(gcloud.ssh(tpu, node, gcloud.status_script(args.launch)), dry_value="") for node in tpu.nodes]
    if not runner.dry_run:
      print("\n".join([f"{tpu.name}: {current or 'not found'}", *jobs]), flush=True)
  elif args.verb == "logs":
    runner.run_all([gcloud.ssh(tpu, node, gcloud.logs_script(args.launch, args.lines, args.follow))
                    for node in tpu.nodes])
  elif args.verb == "stop":
    runner.run_all([gcloud.ssh(tpu, node, gcloud.stop_script(args.launch)) for node in tpu.nodes])
  elif args.verb == "delete":
    delete(runner, tpu, state(runner, tpu), args.poll)


if __name__ == "__main__":
  main(sys.argv[1:])
