"""A workdir has one owner and one config: `python -m launch.train` refusing a second run and a resume that would
change the trajectory, recording allowed changes, taking over stale locks, stopping on Ctrl-C; the lock and the
config comparison of `zoo/train/workdir.py` in-process."""

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import wait_until
from test_train_cli import SMOKE, final_state, launch, logged_steps, run_cli

from zoo.train import workdir as workdir_lib

STEPS = 120
RUN = (SMOKE, f"--config.train.steps={STEPS}", "--config.train.log_every=1", "--config.train.checkpoint_every=50",
       "--config.train.progress_bar=false")


def errors(result) -> list[str]:
  return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def snapshot(workdir) -> dict[str, bytes]:
  """Every file of the run's record and checkpoints, byte for byte, by relative path."""
  return {str(path.relative_to(workdir)): path.read_bytes() for path in sorted(workdir.rglob("*"))
          if path.is_file() and path.name != "lock" and "tensorboard" not in path.parts}


def start_and_wait(workdir, data_dir, at_step: int, *args) -> subprocess.Popen:
  process = launch(*RUN, f"--config.train.data_dir={data_dir}", f"--workdir={workdir}", *args)
  wait_until(lambda: max(logged_steps(workdir), default=0) >= at_step, process)
  return process


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, data_dir):
  """A 120-step run stopped by Ctrl-C (SIGINT) after step 5: (workdir, its result, the step it stopped at)."""
  workdir = tmp_path_factory.mktemp("interrupted") / "run"
  process = start_and_wait(workdir, data_dir, 5)
  process.send_signal(signal.SIGINT)
  stdout, stderr = process.communicate(timeout=120)
  result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
  stops = [line for line in stdout.splitlines() if line.startswith("interrupted:")]
  stopped_at = int(stops[0].split("stopped at step ")[1].split()[0]) if len(stops) == 1 else None
  return workdir, result, stopped_at


@pytest.fixture
def stopped_run(interrupted, tmp_path):
  """A copy of the interrupted run's workdir, for a test to resume or refuse."""
  workdir = tmp_path / "run"
  shutil.copytree(interrupted[0], workdir)
  return workdir, interrupted[2]


def rerun(workdir, data_dir, *overrides) -> subprocess.CompletedProcess:
  return run_cli(*RUN, f"--config.train.data_dir={data_dir}", f"--workdir={workdir}", *overrides)


def test_ctrl_c_saves_a_checkpoint_at_that_step_and_exits_130(interrupted):
  workdir, result, stopped_at = interrupted
  assert result.returncode == 130, result.stderr[-3000:]
  assert stopped_at is not None, result.stdout[-3000:]
  assert 5 <= stopped_at < STEPS and stopped_at == max(logged_steps(workdir))
  assert final_state(workdir)[0] == stopped_at  # saved at the step it stopped, not the last regular one (every 50)
  assert "Traceback" not in result.stderr and "summary:" not in result.stdout
  assert not (workdir / "lock").exists()  # released


def test_a_changed_model_size_is_refused_untouched_and_the_original_command_then_resumes(stopped_run, data_dir):
  workdir, stopped_at = stopped_run
  before = snapshot(workdir)
  result = rerun(workdir, data_dir, "--config.model.d_model=32")
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(errors(result)) == 1 and "model.d_model (16 there, 32 now)" in errors(result)[0], result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  assert snapshot(workdir) == before  # checkpoints/, config.json and metrics.jsonl byte-identical
  assert not (workdir / "damaged_checkpoints").exists()

  resumed = rerun(workdir, data_dir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "warning" not in resumed.stderr
  assert logged_steps(workdir) == list(range(1, STEPS + 1)) + [STEPS]  # earlier lines kept, each step once
  assert f'summary: {{"step": {STEPS},' in resumed.stdout
  assert json.loads((workdir / "config.json").read_text()) == json.loads(before["config.json"])


@pytest.mark.parametrize("override,named", [
    ("--config.optimizer.learning_rate=0.01", "optimizer.learning_rate (0.003 there, 0.01 now)"),
    ("--config.task.seed=1", "task.seed (0 there, 1 now)"),
], ids=["learning_rate", "task_seed"])
def test_a_resume_that_changes_the_trajectory_is_refused(stopped_run, data_dir, override, named):
  workdir, _ = stopped_run
  before = snapshot(workdir)
  result = rerun(workdir, data_dir, override)
  assert result.returncode == 2 and len(errors(result)) == 1 and named in errors(result)[0], result.stderr[-3000:]
  assert snapshot(workdir) == before


@pytest.mark.slow
def test_more_steps_resume_append_and_are_recorded_as_an_amendment(stopped_run, data_dir):
  workdir, stopped_at = stopped_run
  config_before = (workdir / "config.json").read_bytes()
  killed_save = workdir / "checkpoints" / f"{stopped_at + 1}.orbax-checkpoint-tmp-1"  # what a kill -9 mid-save leaves
  killed_save.mkdir()
  result = rerun(workdir, data_dir, f"--config.train.steps={STEPS + 10}", "--config.train.log_every=2")
  assert not killed_save.exists()  # the owner's next run removes it
  assert result.returncode == 0, result.stderr[-3000:]
  assert logged_steps(workdir) == (list(range(1, stopped_at + 1))  # the run so far, then every second step
                                   + [s for s in range(stopped_at + 1, STEPS + 11) if s % 2 == 0] + [STEPS + 10])
  assert (workdir / "config.json").read_bytes() == config_before  # the original record, never rewritten
  amendments = workdir_lib.amendments(str(workdir))
  assert [(a["key"], a["old"], a["new"], a["after_step"]) for a in amendments] == [
      ("train.log_every", 1, 2, stopped_at), ("train.steps", STEPS, STEPS + 10, stopped_at)]
  datetime.datetime.fromisoformat(amendments[0]["date"])  # dated
  assert workdir_lib.effective_config(str(workdir))["train"]["steps"] == STEPS + 10
  assert f'summary: {{"step": {STEPS + 10},' in result.stdout


def test_fewer_steps_than_the_latest_checkpoint_are_refused(stopped_run, data_dir):
  workdir, stopped_at = stopped_run
  before = snapshot(workdir)
  result = rerun(workdir, data_dir, f"--config.train.steps={stopped_at - 1}")
  assert result.returncode == 2 and len(errors(result)) == 1, result.stderr[-3000:]
  assert f"below the latest checkpoint of {workdir} (step {stopped_at})" in errors(result)[0]
  assert "summary:" not in result.stdout and snapshot(workdir) == before


@pytest.mark.slow
def test_a_stale_lock_of_a_dead_process_is_taken_over(stopped_run, data_dir):
  workdir, _ = stopped_run
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  pid = int(dead.stdout)
  (workdir / "lock").write_text(json.dumps(dict(host=socket.gethostname(), pid=pid, started="2026-01-01T00:00:00")))
  result = rerun(workdir, data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: took over the stale lock")]
  assert len(warnings) == 1 and f"pid {pid} on {socket.gethostname()}" in warnings[0], result.stderr[-3000:]
  assert not (workdir / "lock").exists()


def test_a_second_run_on_a_workdir_in_use_exits_2_and_the_first_finishes_unharmed(tmp_path, data_dir):
  workdir = tmp_path / "shared"
  first = start_and_wait(workdir, data_dir, 1)
  os.kill(first.pid, signal.SIGSTOP)  # holds the lock for as long as the second run needs to see it
  try:
    started = time.monotonic()
    second = rerun(workdir, data_dir)
    elapsed = time.monotonic() - started
  finally:
    os.kill(first.pid, signal.SIGCONT)
  assert second.returncode == 2, second.stderr[-3000:]
  assert len(errors(second)) == 1 and f"in use by another training run (pid {first.pid} on" in errors(second)[0]
  assert elapsed < 60, elapsed  # refused at startup: no data set, no compile
  _, stderr = first.communicate(timeout=240)
  assert first.returncode == 0, stderr[-3000:]
  assert logged_steps(workdir) == list(range(1, STEPS + 1)) + [STEPS]  # each step logged once
  assert final_state(workdir)[0] == STEPS


def test_a_workdir_that_is_a_file_is_one_line(tmp_path, data_dir):
  path = tmp_path / "file"
  path.write_text("not a workdir")
  result = run_cli(SMOKE, f"--config.train.data_dir={data_dir}", f"--workdir={path}")
  assert result.returncode == 2 and errors(result) == [f"error: --workdir={path} is a file, not a directory"], \
      result.stderr[-3000:]
  assert path.read_text() == "not a workdir"


# In-process: the comparison and the locks.

@pytest.mark.parametrize("key,value", [("train.log_every", 7), ("train.eval_every", 3), ("train.checkpoint_every", 9),
                                       ("train.max_to_keep", 1), ("train.log_dir", "/tmp/logs"),
                                       ("train.data_dir", "/tmp/data"), ("mesh.data", 1), ("sharding_rules.embed", ""),
                                       ("train.steps", 500)])
def test_record_amends_what_leaves_the_trajectory_alone(stopped_run, key, value):
  workdir, stopped_at = stopped_run
  config = workdir_lib.effective_config(str(workdir))
  old = workdir_lib.effective_config(str(workdir))
  workdir_lib.set_path(config, key, value)
  note = workdir_lib.record(str(workdir), config)
  assert note.startswith(f"amended: {key} ") and f"from step {stopped_at}" in note
  section, name = key.split(".")
  assert [(a["key"], a["old"], a["new"]) for a in workdir_lib.amendments(str(workdir))] == [
      (key, old[section][name], value)]
  assert workdir_lib.effective_config(str(workdir)) == config
  assert workdir_lib.record(str(workdir), config) is None  # nothing new to record the second time


def test_a_workdir_written_before_the_model_sections_resumes_as_the_same_run(stopped_run):
  """A config.json of the flat model shape configs/pi.py wrote before the sections is read in today's shape: the same
  run, nothing to amend."""
  workdir, _ = stopped_run
  config = workdir_lib.effective_config(str(workdir))
  saved = json.loads((workdir / "config.json").read_text())
  saved["model"] = dict(num_layers=1, d_model=16, num_heads=2, mlp_dim=32, activation="gelu", norm="layernorm",
                        norm_position="pre", dropout=0.0, attention_dropout=0.0, pe="urpe", pe_options={},
                        attention_impl="xla", dtype="float32")
  (workdir / "config.json").write_text(json.dumps(saved))
  assert workdir_lib.effective_config(str(workdir)) == config
  assert workdir_lib.record(str(workdir), config) is None
  assert not (workdir / workdir_lib.AMENDMENTS_FILE).exists()


@pytest.mark.parametrize("key,value", [("model.attention.num_heads", 4), ("model.attention.head_dim", 4),
                                       ("optimizer.warmup_steps", 0), ("train.batch_size", 16),
                                       ("train.grad_accum_steps", 2), ("train.seed", 1),
                                       ("train.init_from", "pi_urpe"), ("task.length", 8), ("optimizer.newkey", 1)])
def test_record_refuses_what_changes_the_trajectory_naming_it(stopped_run, key, value):
  workdir, _ = stopped_run
  config = workdir_lib.effective_config(str(workdir))
  workdir_lib.set_path(config, key, value)
  with pytest.raises(workdir_lib.WorkdirError, match=f"holds a run of another config: {key} "):
    workdir_lib.record(str(workdir), config)
  assert not (workdir / workdir_lib.AMENDMENTS_FILE).exists()


def test_first_difference_names_the_first_path_in_sorted_order():
  saved = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
  assert workdir_lib.first_difference(saved, saved) is None
  assert workdir_lib.first_difference(saved, {"a": {"x": 1, "y": [1, 3]}, "b": 3}) == "a.y ([1, 2] there, [1, 3] now)"
  assert workdir_lib.first_difference(saved, {"a": {"x": 1, "y": [1, 2]}}) == "b (2 there, None now)"
  # A sweep's config.json written before an option existed (here optimizer.lr_factor) is the same run at its default.
  from configs import lm_bytes  # noqa: PLC0415

  config = lm_bytes.get_config("smoke").to_dict()
  older = {**config, "optimizer": {k: v for k, v in config["optimizer"].items() if k != "lr_factor"}}
  assert workdir_lib.first_difference(older, config) is None
  assert workdir_lib.first_difference(older, {**config, "optimizer": {**config["optimizer"], "lr_factor": 2.0}}) == (
      "optimizer.lr_factor (1.0 there, 2.0 now)")


def test_a_local_lock_excludes_a_second_owner_until_released(tmp_path):
  lock = workdir_lib.Lock.take(str(tmp_path / "w"))
  owner = json.loads((tmp_path / "w" / "lock").read_text())
  assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
  with pytest.raises(workdir_lib.WorkdirError, match=f"in use by another training run \\(pid {os.getpid()}"):
    workdir_lib.Lock.take(str(tmp_path / "w"))
  lock.release()
  assert not (tmp_path / "w" / "lock").exists()
  workdir_lib.Lock.take(str(tmp_path / "w")).release()


def test_a_remote_lock_is_refused_while_its_heartbeat_is_fresh_and_taken_over_after(tmp_path, capsys):
  """The gs:// kind, on a local path through the same epath calls."""
  workdir = str(tmp_path)
  first = workdir_lib.RemoteLock(workdir, settle=0)
  with pytest.raises(workdir_lib.WorkdirError, match="in use by another training run .* alive \\d+ s ago"):
    workdir_lib.RemoteLock(workdir, settle=0)
  first._stop.set()  # the owner dies: its heartbeat stops, and an hour passes
  old = dict(first.record, heartbeat="2000-01-01T00:00:00+00:00")
  (tmp_path / "lock").write_text(json.dumps(old))
  second = workdir_lib.RemoteLock(workdir, settle=0)
  assert "took over the stale lock" in capsys.readouterr().err
  assert not first.refresh()  # the first owner, were it only hung, sees that the lock is no longer its own
  second.release()
  assert not (tmp_path / "lock").exists()
