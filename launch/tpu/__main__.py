r"""Cloud TPU from this checkout: create a slice, train on it detached, read its logs, survive preemptions; or write
a JobSet for GKE.

  python -m launch.tpu create NAME --zone=ZONE --accelerator=v5litepod-16 --runtime=v2-alpha-tpuv5-lite [--spot]
  python -m launch.tpu run NAME --zone=ZONE --workdir=gs://BUCKET/RUN --config=configs/pi.py:urpe [--config.x=y ...]
  python -m launch.tpu run ... --supervise --accelerator=... --runtime=... --spot [--max-attempts=5 --poll=60]
  python -m launch.tpu status|logs|stop|delete NAME --zone=ZONE
  python -m launch.tpu create|run|status|logs|stop|delete NAME ... --slices=2   # multislice: nodes NAME-0, NAME-1
  python -m launch.tpu image build|push --image=REGISTRY/PATH:TAG
  python -m launch.tpu manifest --name=RUN --image=IMAGE --accelerator=tpu-v5-lite-podslice --topology=4x4 \
      --slices=2 --workdir=gs://BUCKET/RUN --config=configs/pi.py:urpe [--out=jobset.yaml --apply]

Every value is checked here before any cloud call: names, zone and project, launch ids, the `gs://` workdir, and
the experiment config with its overrides exactly as `launch.train` checks it (one `error:` line, exit status 2);
every value that reaches a worker's shell is quoted (remote.py). Every subcommand takes --dry-run: it prints each
command it would run (one per line) and runs none. Slices are queued resources (`--spot`, `--reserved` or
on-demand); `run` copies the checkout to every worker as a per-launch archive, installs `.[tpu,gcs]` and starts
`launch.train --distributed` detached on all workers (see gcloud.py for where logs go). `--slices=N` (on every slice
command, the same each time) makes it multislice: one queued resource of N nodes NAME-0 ... NAME-<N-1>, each
worker started with its slice's MEGASCALE settings (worker 0 of NAME-0 coordinates) and `--config.mesh.slices=N`.
`run --supervise` stays in the foreground, polls the slice every --poll seconds and, when it is preempted or gone,
deletes and re-creates it and relaunches the same command, which resumes from the workdir's latest checkpoint; after
--max-attempts launches it gives up. --zone and --project default to gcloud's (`gcloud config set compute/zone ...`).
Needs the gcloud CLI (docker for `image`, kubectl for `manifest --apply`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time

import yaml

from launch.cli import fail
from launch.tpu import checks, gcloud, image
from launch.tpu.manifest import JobSpec, container_args, jobset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOST = ("SUSPENDING", "SUSPENDED", "FAILED", "DELETING", "")  # "" = no such queued resource


class Parser(argparse.ArgumentParser):
  def error(self, message: str) -> None:
    fail(message)


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


def create(runner: Runner, tpu: gcloud.Slice, args: argparse.Namespace) -> None:
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


def launch(runner: Runner, tpu: gcloud.Slice, args: argparse.Namespace) -> str | None:
  """Copies the checkout to every worker under a new launch id and starts training there, detached; None when the
  copy or the start still fails after --retries more tries (a slice lost meanwhile, a network that stays down).

  A failed try is repeated whole, copy and start, after --retry-wait seconds, doubling each time: the start script
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


def watch(runner: Runner, tpu: gcloud.Slice, launch_id: str, args: argparse.Namespace) -> tuple[str, str]:
  """Polls the slice and the job until the job is no longer running: (the slice's state, the job's). A slice that
  stays ACTIVE while no worker answers ssh for more than --unreachable-after seconds ends the launcher (exit 1)."""
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


def supervise(runner: Runner, tpu: gcloud.Slice, args: argparse.Namespace) -> None:
  """Launches, then polls the slice and the job; re-creates and relaunches after a preemption (the queued resource
  SUSPENDING, SUSPENDED, FAILED or gone) or a launch that could not be copied or started, at most --max-attempts
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


def run(runner: Runner, tpu: gcloud.Slice, args: argparse.Namespace) -> None:
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


def manifest(runner: Runner, spec: JobSpec, args: argparse.Namespace) -> None:
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


def build_parser() -> Parser:
  parser = Parser(prog="python -m launch.tpu", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  common = Parser(add_help=False)
  common.add_argument("--dry-run", action="store_true", help="print every command, run none")
  on_slice = Parser(add_help=False, parents=[common])
  on_slice.add_argument("name", help="the slice (queued resource and TPU VM) name")
  on_slice.add_argument("--zone", default="", help="default: gcloud's (gcloud config set compute/zone ZONE)")
  on_slice.add_argument("--project", default="", help="default: gcloud's (gcloud config set project PROJECT)")
  on_slice.add_argument("--slices", type=int, default=1, help="slices joined over DCN (multislice): one queued "
                        "resource with nodes NAME-0, NAME-1, ...")
  on_slice.add_argument("--retries", type=int, default=3, help="more tries of a failed copy, start or describe")
  on_slice.add_argument("--retry-wait", type=float, default=15.0, help="seconds before the first retry, doubling")
  creating = Parser(add_help=False)
  creating.add_argument("--accelerator", help="e.g. v5litepod-16, v5p-32, v4-32, v6e-16")
  creating.add_argument("--runtime", help="TPU VM runtime version, e.g. v2-alpha-tpuv5-lite, v2-alpha-tpuv5")
  tier = creating.add_mutually_exclusive_group()
  tier.add_argument("--spot", dest="tier", action="store_const", const="spot", help="Spot VMs: cheap, preemptible")
  tier.add_argument("--reserved", dest="tier", action="store_const", const="reserved", help="your reservation")
  creating.set_defaults(tier="on-demand")
  creating.add_argument("--poll", type=float, default=60.0, help="seconds between state checks")

  commands.add_parser("create", parents=[on_slice, creating], help="queue a slice, wait for ACTIVE")
  run_parser = commands.add_parser("run", parents=[on_slice, creating], help="copy, install, start training detached")
  run_parser.add_argument("--workdir", required=True, help="gs://... : checkpoints (and copies of the logs)")
  run_parser.add_argument("--config", required=True, help="experiment config, e.g. configs/pi.py:urpe")
  run_parser.add_argument("--supervise", action="store_true", help="stay, re-create and relaunch after preemptions")
  run_parser.add_argument("--max-attempts", type=int, default=5, help="launches in all before giving up")
  run_parser.add_argument("--unreachable-after", type=float, default=1800.0,
                          help="seconds without ssh to an ACTIVE slice before --supervise gives up")
  for name, help_text in (("status", "the slice's state and the job's on every worker"),
                          ("logs", "the end of every worker's train.log"),
                          ("stop", "SIGTERM to the job: it saves a checkpoint and exits 143"),
                          ("delete", "delete the queued resource and its TPU VMs")):
    sub = commands.add_parser(name, parents=[on_slice], help=help_text)
    if name != "delete":
      sub.add_argument("--launch", default="", help="a launch id (default: the latest on the workers)")
  commands.choices["logs"].add_argument("--lines", type=int, default=50)
  commands.choices["logs"].add_argument("--follow", action="store_true", help="then print new lines until Ctrl-C")

  image_parser = commands.add_parser("image", parents=[common], help="build or push the training image (docker)")
  image_parser.add_argument("action", choices=("build", "push"))
  image_parser.add_argument("--image", required=True, help="e.g. europe-docker.pkg.dev/PROJECT/REPO/train:TAG")

  manifest_parser = commands.add_parser("manifest", parents=[common], help="a JobSet for GKE (kubectl apply -f)")
  manifest_parser.add_argument("--name", required=True, help="the JobSet name (a DNS label)")
  manifest_parser.add_argument("--image", required=True, help="a container image with this checkout and .[tpu,gcs]")
  manifest_parser.add_argument("--accelerator", required=True, help="GKE's label, e.g. tpu-v5-lite-podslice")
  manifest_parser.add_argument("--topology", required=True, help="of one slice, e.g. 4x4")
  manifest_parser.add_argument("--slices", type=int, default=1, help="slices joined over DCN (multi-slice)")
  manifest_parser.add_argument("--workdir", required=True, help="gs://... : checkpoints")
  manifest_parser.add_argument("--config", required=True, help="experiment config, e.g. configs/pi.py:urpe")
  manifest_parser.add_argument("--max-restarts", type=int, default=3, help="JobSet restarts (preemptions) allowed")
  manifest_parser.add_argument("--ttl", type=int, default=7 * 24 * 3600, help="seconds a finished JobSet is kept")
  manifest_parser.add_argument("--queue", default="", help="a Kueue LocalQueue to submit to (default: no Kueue)")
  manifest_parser.add_argument("--out", default="", help="write here instead of stdout")
  manifest_parser.add_argument("--apply", action="store_true", help="then kubectl apply -f OUT")
  return parser


def parse(argv: list[str]) -> argparse.Namespace:
  """The arguments; `--config.x=y` overrides pass through to launch.train after --config."""
  args, extra = build_parser().parse_known_args(argv)
  unknown = [a for a in extra if not a.startswith("--config.")]
  if unknown:
    fail(f"unrecognized arguments: {' '.join(unknown)}")
  if args.command in ("run", "manifest"):
    args.overrides = extra
  elif extra:
    fail(f"{args.command} takes no config overrides, got {' '.join(extra)}")
  if args.command == "create" and not (args.accelerator and args.runtime):
    fail("create: --accelerator and --runtime are required")
  if args.command == "run" and args.supervise and not (args.accelerator and args.runtime):
    fail("run --supervise: --accelerator and --runtime are required (to re-create the slice after a preemption)")
  return args


def gcloud_default(prop: str, flag: str, placeholder: str) -> str:
  """gcloud's configured `prop`, for a --`flag` left out: read from the local gcloud config (no cloud call, so also in
  --dry-run, whose commands name it). One line (exit status 2) when it is not set either."""
  how = f"pass --{flag}={placeholder} or set gcloud's default: gcloud config set {prop} {placeholder}"
  try:
    result = subprocess.run(gcloud.config_value(prop), capture_output=True, text=True)
  except FileNotFoundError:
    fail(f"no --{flag}, and no gcloud CLI to read its default from: {how}")
  if result.returncode or not (value := result.stdout.strip()):
    fail(f"no --{flag}, and gcloud has no default {flag}: {how}")
  return value


def checked(args: argparse.Namespace) -> gcloud.Slice | JobSpec:
  """The slice (or the JobSet spec) once every user value is checked, the experiment config included — before any
  cloud call, so a typo fails here with one line instead of on a billed slice after a pack, a copy and an install."""
  try:
    if args.command == "manifest":
      spec = JobSpec(name=args.name, image=args.image, accelerator=args.accelerator, topology=args.topology,
                     slices=args.slices, workdir=args.workdir, config=args.config, overrides=tuple(args.overrides),
                     max_restarts=args.max_restarts, ttl_seconds=args.ttl, queue=args.queue)
      checks.experiment(container_args(spec))
      return spec
    zone = args.zone or gcloud_default("compute/zone", "zone", "ZONE")
    project = args.project or gcloud_default("project", "project", "PROJECT")
    tpu = gcloud.Slice(args.name, zone, project, args.slices)
    for what in ("accelerator", "runtime"):
      if getattr(args, what, None):
        checks.gcloud_value(getattr(args, what), f"--{what}")
    checks.launch_id(getattr(args, "launch", ""))
    if args.command == "run":
      checks.gcs_workdir(args.workdir, "run: --workdir")
      checks.config_args(args.config, args.overrides)
      checks.experiment(gcloud.train_args(args.workdir, args.config, args.overrides, tpu.slices))
    return tpu
  except ValueError as e:
    fail(str(e))


def main(argv: list[str]) -> None:
  args = parse(argv)
  runner = Runner(args.dry_run, getattr(args, "retries", 0), getattr(args, "retry_wait", 0.0))  # image, manifest: 0
  if args.command == "manifest":
    manifest(runner, checked(args), args)
    return
  if args.command == "image":
    try:
      checks.image(args.image)
    except ValueError as e:
      fail(str(e))
    runner.run(image.build(REPO, args.image) if args.action == "build" else image.push(args.image))
    return
  tpu = checked(args)
  if args.command == "create":
    create(runner, tpu, args)
  elif args.command == "run":
    run(runner, tpu, args)
  elif args.command == "status":
    current = state(runner, tpu)
    jobs = [runner.output(gcloud.ssh(tpu, node, gcloud.status_script(args.launch)), dry_value="") for node in tpu.nodes]
    if not runner.dry_run:
      print("\n".join([f"{tpu.name}: {current or 'not found'}", *jobs]), flush=True)
  elif args.command == "logs":
    runner.run_all([gcloud.ssh(tpu, node, gcloud.logs_script(args.launch, args.lines, args.follow))
                    for node in tpu.nodes])
  elif args.command == "stop":
    runner.run_all([gcloud.ssh(tpu, node, gcloud.stop_script(args.launch)) for node in tpu.nodes])
  elif args.command == "delete":
    delete(runner, tpu, state(runner, tpu), poll=10.0)


if __name__ == "__main__":
  main(sys.argv[1:])
