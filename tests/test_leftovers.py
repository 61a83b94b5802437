"""Nothing is left behind: real commands in a fresh temp dir leave it empty and never start libtpu on a machine
without TPU chips; a killed data set build's leftovers go with the next build; two first builds at once both work."""

import os
import pathlib
import signal
import subprocess
import sys

import pytest
from conftest import REPO, cli_env, wait_until

TPU_LOGS = pathlib.Path("/tmp/tpu_logs")  # where libtpu logs, whatever TMPDIR says
# Builds a urpe_synthetic data set of argv[2] training examples under argv[1] and prints their number.
BUILD = ("import sys; from zoo.data import prepare, tasks; "
         "task = tasks.build('position_identification', dict(length=16, vocab_size=10, num_train=int(sys.argv[2]), "
         "num_eval=8)); print('examples:', len(prepare(task, sys.argv[1]).as_data_source(split='train')))")


def fresh_env(tmp: pathlib.Path) -> dict:
  """The test environment with its own empty TMPDIR and JAX_PLATFORMS unset, as a user's shell has it."""
  tmp.mkdir()
  env = {**cli_env(), "TMPDIR": str(tmp)}
  env.pop("JAX_PLATFORMS")
  return env


def run(args: list[str], env: dict, timeout: float = 240) -> str:
  """Runs `python ARGS` from the repository root; returns stderr after checking the exit status and that libtpu
  wrote no log for this process (its log files end in the process id)."""
  process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  out, err = process.communicate(timeout=timeout)
  assert process.returncode == 0, err[-3000:]
  assert not list(TPU_LOGS.glob(f"*.{process.pid}")), f"libtpu started in {args}"
  return out + err


def test_commands_leave_the_temp_dir_empty_and_never_start_libtpu(tmp_path):
  env, workdir = fresh_env(tmp_path / "tmp"), tmp_path / "run"
  outputs = [
      run(["-m", "launch.train", "--config=configs/pi.py:urpe,smoke", f"--workdir={workdir}",
           f"--config.train.data_dir={tmp_path / 'data'}", "--config.train.steps=3",
           "--config.train.progress_bar=False"], env),
      run(["-m", "launch.evaluate", f"--workdir={workdir}"], env),
      run(["-c", "import zoo.models, jax; jax.numpy.ones(1)"], env),
  ]
  for output in outputs:
    assert "TPU" not in output, output[-3000:]
  assert not os.listdir(tmp_path / "tmp")


@pytest.mark.slow
def test_a_killed_build_leaves_nothing_after_the_next_build(tmp_path):
  env, data = fresh_env(tmp_path / "tmp"), tmp_path / "data"
  build = subprocess.Popen([sys.executable, "-c", BUILD, str(data), "30000"], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  wait_until(lambda: bool(list(data.glob("task_examples/*/incomplete.*"))), build, timeout=120)
  build.send_signal(signal.SIGKILL)
  build.wait()
  assert list(data.glob("task_examples/*/incomplete.*")) and not list(data.glob("task_examples/*/1.0.0"))
  assert "examples: 30000" in run(["-c", BUILD, str(data), "30000"], env)
  assert not list(data.glob("task_examples/*/incomplete.*"))
  assert not os.listdir(tmp_path / "tmp")


@pytest.mark.slow
def test_two_first_builds_at_once_both_succeed(tmp_path):
  """Without the build lock the slower one fails renaming its finished data set onto the other's."""
  env, data = fresh_env(tmp_path / "tmp"), tmp_path / "data"
  builds = [subprocess.Popen([sys.executable, "-c", BUILD, str(data), "50000"], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
  for build in builds:
    out, err = build.communicate(timeout=240)
    assert build.returncode == 0 and "examples: 50000" in out, err[-3000:]
  assert not list(data.glob("task_examples/*/incomplete.*"))
  assert not os.listdir(tmp_path / "tmp")
