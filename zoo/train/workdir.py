"""A workdir's ownership and record: one training process at a time, one config for the whole run.

Ownership. A process trains in a workdir only while it holds `<workdir>/lock` (JSON: host, pid, start and heartbeat
times, a random token); a second `launch.train` on the same workdir is refused in one line instead of logging every
step twice and writing checkpoints over the first one's. In a multi-process run only process 0 takes it.
- Local disks: the lock is an `flock` on the file, which the kernel drops when its process dies however it dies, so
  a lock left by a killed run is stale by construction (no pid guessing, no pid reuse) and is taken over with a
  one-line warning naming its old owner. Over NFS the same holds through NFSv4 byte-range locks and their leases.
- `gs://` (any URL, through etils epath): an object store has no locks and epath no create-if-absent, so the lock
  is written, left to settle for `SETTLE_SECONDS` and read back; the process whose token is read back owns it. The
  race that remains: two processes that both find no lock, and whose check and write are more than the settle time
  apart, both see their own token and both run. The owner rewrites the heartbeat every `HEARTBEAT_SECONDS`; a lock
  whose heartbeat is older than `STALE_SECONDS` belongs to a dead (or hung) process and is taken over.

Record. `config.json` is written when the run starts fresh (no checkpoint yet) and never rewritten after that. A
resume compares the requested config with the workdir's effective config (`config.json` and its amendments) before
any checkpoint is read, moved or written:
- A difference that changes the trajectory — the model, task, optimizer, seed, batch, anything not in `ALLOWED` —
  is refused in one line naming the first such key: the checkpoints and the record stay as they are, and the original
  command still resumes.
- The keys in `ALLOWED` (cadences, where files go, the device layout, and `train.steps` no lower than the latest
  checkpoint) may change; each change is appended to `amendments.jsonl` with the date and the checkpoint step it
  applies after. More steps stretch a decaying learning-rate schedule to the new total from the resumed step on.
- Fewer `train.steps` than the latest checkpoint is refused: the model is past that step, and a summary of the run
  must never claim a step its model is not at (`launch.evaluate --step` reads an earlier kept step).
"""

from __future__ import annotations

import datetime
import fcntl
import importlib.util
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from etils import epath

from zoo.checkpoints.manifest import CONFIG_FILE, write_config
from zoo.models.config import nest
from zoo.train.options import with_defaults

LOCK_FILE = "lock"
AMENDMENTS_FILE = "amendments.jsonl"
HEARTBEAT_SECONDS = 60.0
STALE_SECONDS = 600.0
SETTLE_SECONDS = 2.0

# Keys (dotted; a section name covers all its keys) a resume may change, and why that leaves the trajectory alone.
ALLOWED = {
    "train.steps": "how far to train; the steps already taken stay (never below the latest checkpoint)",
    "train.log_every": "logging cadence",
    "train.eval_every": "evaluation cadence; evaluation reads the model and changes nothing",
    "train.eval_batch_size": "evaluation only; its sums are exact whatever the batch size",
    "train.eval_batches": "evaluation only: how much of the validation split the reported metrics cover",
    "train.checkpoint_every": "checkpoint cadence; a resume restores bit-identical state",
    "train.max_to_keep": "how many checkpoints are kept",
    "train.data_dir": "where the task's data is cached; the same task and seed write the same examples",
    "train.log_dir": "where metrics and TensorBoard events go",
    "train.progress_bar": "display only",
    "train.profile_steps": "a profiler trace; the steps run the same",
    "mesh": "the device layout: a checkpoint restores exactly onto another mesh; only float reduction order changes",
    "sharding_rules": "the device layout, as for mesh",
}


class WorkdirError(ValueError):
  """This run may not use the workdir (another process owns it, it holds another config, ...): one line."""


def resolve(workdir: str, log_dir: str) -> str:
  """An absolute local path, or a remote URL (gs://bucket/run on Cloud TPU) that orbax writes to directly, as do the
  lock, the record and the logs (`train.log_dir`, default the workdir) through gcsfs and google-cloud-storage: the
  `gcs` extra, checked here so that a run without it stops in one line before it trains."""
  if "://" in workdir or "://" in log_dir:
    missing = [name for name in ("gcsfs", "google.cloud.storage") if not _importable(name)]
    if missing:
      raise WorkdirError(f"train: a gs:// workdir or log_dir needs the gcs extra (pip install -e '.[gcs]'): "
                         f"{', '.join(missing)} not installed")
  if "://" in workdir:
    return workdir
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f"--workdir={workdir} is a file, not a directory")
  return path


def _importable(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # a parent package (google.cloud) is missing
    return False


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def describe_owner(owner: dict[str, Any]) -> str:
  return f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}"


class Lock:
  """Ownership of a workdir until `release()`; `take(workdir)` picks the local or the remote kind. Each kind starts
  the heartbeat once it holds the lock."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.record = dict(host=socket.gethostname(), pid=os.getpid(), started=now(), heartbeat=now(),
                       token=uuid.uuid4().hex)
    self._stop = threading.Event()
    self._heartbeat = threading.Thread(target=self._beat, daemon=True, name="zoo-workdir-heartbeat")

  @staticmethod
  def take(workdir: str) -> Lock:
    return RemoteLock(workdir) if "://" in workdir else LocalLock(workdir)

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      if not self.refresh():
        print(f"warning: another process took over the lock of {self.workdir}; this run no longer refreshes it",
              file=sys.stderr, flush=True)
        return

  def refresh(self) -> bool:
    """Rewrites the heartbeat time; False when the lock is no longer ours."""
    raise NotImplementedError

  def release(self) -> None:
    self._stop.set()
    self._heartbeat.join()

  @staticmethod
  def took_over(workdir: str, previous: dict[str, Any], why: str) -> None:
    print(f"warning: took over the stale lock of {workdir} ({describe_owner(previous)}; {why})", file=sys.stderr,
          flush=True)


class LocalLock(Lock):
  """An flock on `<workdir>/lock`, held through the open file until release or death."""

  def __init__(self, workdir: str):
    super().__init__(workdir)
    self.path = os.path.join(workdir, LOCK_FILE)
    try:
      os.makedirs(workdir, exist_ok=True)
      self.fd = self._open_locked()
    except OSError as e:
      raise WorkdirError(f"cannot use --workdir={workdir}: {e.strerror or e}") from None
    previous = self._read()
    if previous:
      self.took_over(workdir, previous, "that process is no longer running")
    self._write()
    self._heartbeat.start()

  def _open_locked(self) -> int:
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        owner = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
        os.close(fd)
        raise WorkdirError(f"workdir {self.workdir} is in use by another training run ({describe_owner(owner)}); "
                           f"wait for it to end or stop it") from None
      try:
        if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
          return fd
      except FileNotFoundError:
        pass
      os.close(fd)  # its owner released and removed it between our open and flock: the next file is the lock

  def _read(self) -> dict[str, Any]:
    text = os.pread(self.fd, 1 << 16, 0)
    try:
      return json.loads(text) if text.strip() else {}
    except ValueError:
      return {"pid": "?", "host": "?", "started": "? (unreadable lock file)"}

  def _write(self) -> None:
    data = json.dumps(self.record).encode()
    os.ftruncate(self.fd, 0)
    os.pwrite(self.fd, data, 0)

  def refresh(self) -> bool:
    self.record["heartbeat"] = now()
    self._write()
    return True

  def release(self) -> None:
    super().release()
    os.unlink(self.path)  # while still holding it: whoever opened this file before re-checks the path and retries
    os.close(self.fd)


class RemoteLock(Lock):
  """Write, settle, read back (see the module docstring for the race this leaves)."""

  def __init__(self, workdir: str, settle: float = SETTLE_SECONDS):
    super().__init__(workdir)
    self.path = epath.Path(workdir) / LOCK_FILE
    previous = self._read()
    if previous:
      age = time.time() - datetime.datetime.fromisoformat(previous.get("heartbeat", "1970-01-01T00:00:00+00:00")
                                                          ).timestamp()
      if age < STALE_SECONDS:
        raise WorkdirError(f"workdir {workdir} is in use by another training run ({describe_owner(previous)}, "
                           f"alive {age:.0f} s ago); wait for it to end or stop it (its lock is stale after "
                           f"{STALE_SECONDS:.0f} s without a heartbeat)")
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._write()
    time.sleep(settle)
    if self._read().get("token") != self.record["token"]:
      raise WorkdirError(f"workdir {workdir} was locked by another training run at the same moment; rerun to see "
                         f"which one owns it")
    if previous:
      self.took_over(workdir, previous, f"no heartbeat for {age:.0f} s")
    self._heartbeat.start()

  def _read(self) -> dict[str, Any]:
    try:
      return json.loads(self.path.read_text())
    except FileNotFoundError:
      return {}
    except ValueError:  # half-written or foreign: nobody's heartbeat
      return {"pid": "?", "host": "?", "started": "? (unreadable lock file)"}

  def _write(self) -> None:
    self.path.write_text(json.dumps(self.record))

  def refresh(self) -> bool:
    if self._read().get("token") != self.record["token"]:
      return False
    self.record["heartbeat"] = now()
    self._write()
    return True

  def release(self) -> None:
    super().release()
    if self._read().get("token") == self.record["token"]:
      self.path.unlink()


def differences(saved: Any, wanted: Any, path: str = "") -> list[tuple[str, Any, Any]]:
  """(dotted path, saved value, wanted value) of every entry where two JSON values differ, in sorted path order."""
  if isinstance(saved, dict) and isinstance(wanted, dict):
    return [found for key in sorted(set(saved) | set(wanted))
            for found in differences(saved.get(key), wanted.get(key), f"{path}.{key}" if path else key)]
  return [] if saved == wanted else [(path, saved, wanted)]


def describe(difference: tuple[str, Any, Any]) -> str:
  path, saved, wanted = difference
  return f"{path} ({saved!r} there, {wanted!r} now)"


def first_difference(saved: dict[str, Any], wanted: dict[str, Any]) -> str | None:
  """The first option where two configs differ, described in one phrase (None when they train the same run); an
  option either leaves out is at its default, so a config.json written before a new option was added still matches."""
  found = differences(with_defaults(saved), with_defaults(wanted))
  return describe(found[0]) if found else None


def allowed(path: str) -> bool:
  return any(path == key or path.startswith(key + ".") for key in ALLOWED)


def amendments(workdir: str) -> list[dict[str, Any]]:
  path = epath.Path(workdir) / AMENDMENTS_FILE
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
  *parents, key = path.split(".")
  for name in parents:
    config = config.setdefault(name, {})
  config[key] = value


def effective_config(workdir: str) -> dict[str, Any] | None:
  """The workdir's config.json with its amendments applied in order (None when it has no config.json); a model
  section written before the sections (`num_heads`) read in today's shape (`nest`)."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    return None
  config = json.loads(path.read_text())
  for amendment in amendments(workdir):
    set_path(config, amendment["key"], amendment["new"])
  if isinstance(config.get("model"), dict):
    config["model"] = nest(config["model"])
  return config


def checkpoints(workdir: str) -> str:
  return f"{workdir.rstrip('/')}/checkpoints"


def latest_checkpoint_step(workdir: str) -> int | None:
  """The newest finalized checkpoint step (listed, not read; None when there is none)."""
  import orbax.checkpoint as ocp  # noqa: PLC0415 — only training needs orbax; reproduce imports this module too

  directory = epath.Path(checkpoints(workdir))
  return max(ocp.utils.checkpoint_steps(directory), default=None) if directory.exists() else None


def record(workdir: str, config: Any) -> str | None:
  """Writes a fresh run's config.json, or checks a resume's config against the workdir's and appends the allowed
  changes to amendments.jsonl (see the module docstring); returns a line describing the amendments, if any.
  Reads no checkpoint, only lists their steps. Process 0 only."""
  latest_step = latest_checkpoint_step(workdir)
  wanted = json.loads(json.dumps(config.to_dict() if hasattr(config, "to_dict") else config))
  if latest_step is None:  # a fresh start: nothing trained yet that a record could misdescribe
    write_config(wanted, workdir)
    (epath.Path(workdir) / AMENDMENTS_FILE).unlink(missing_ok=True)
    return None
  saved = effective_config(workdir)
  if saved is None:
    raise WorkdirError(f"workdir {workdir} has checkpoints but no {CONFIG_FILE}: its config is unknown, "
                       f"so a resume cannot be checked; pass another --workdir")
  found = differences(with_defaults(saved), with_defaults(wanted))  # an option left out is its default
  if refused := [d for d in found if not allowed(d[0])]:
    raise WorkdirError(f"workdir {workdir} holds a run of another config: {describe(refused[0])}; a resume may "
                       f"change only train.steps, the log / eval / checkpoint cadence, data_dir, log_dir and the mesh "
                       f"(delete the workdir or pass another --workdir to start afresh)")
  steps = wanted["train"]["steps"]
  if steps < latest_step:
    raise WorkdirError(f"train.steps ({steps}) is below the latest checkpoint of {workdir} (step {latest_step}); a "
                       f"run cannot go back: pass --config.train.steps={latest_step} or more, or read an earlier "
                       f"kept step with launch.evaluate --step")
  if not found:
    return None
  date = now()
  lines = [json.dumps(dict(date=date, after_step=latest_step, key=key, old=old, new=new)) + "\n"
           for key, old, new in found]
  path = epath.Path(workdir) / AMENDMENTS_FILE
  path.write_text((path.read_text() if path.exists() else "") + "".join(lines))
  return (f"amended: {', '.join(f'{key} {old!r} → {new!r}' for key, old, new in found)} from step {latest_step} "
          f"(recorded in {path})")
