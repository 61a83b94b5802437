"""`python -m launch.train` as users run it: bad configs, kill -9 and resume, killed saves, several processes,
the ahead-of-time TPU fit check."""

import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, smoke_config

from zoo.train import loop
from zoo.train.checkpoint import Checkpointer

SMOKE = "--config=configs/pi.py:urpe,smoke"


def cli_env(devices: int = 1) -> dict:
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def launch(*args, devices: int = 1, **kwargs) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", "launch.train", *args], cwd=REPO, env=cli_env(devices),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def run_cli(*args, devices: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "launch.train", *args], cwd=REPO, env=cli_env(devices),
                        capture_output=True, text=True, timeout=timeout)


BAD_CONFIGS = {
    "unknown key": ([SMOKE, "--config.train.stepz=3"], "error: unknown config key 'stepz' (did you mean 'steps'?)"),
    "unknown encoding": ([SMOKE, "--config.model.pe=nope"],
                         "error: unknown positional encoding 'nope'; valid choices: alibi, fire, kerple_log, "
                         "kerple_power, learned, none, rope"),
    "invalid schedule": ([SMOKE, "--config.optimizer.schedule=exp"],
                         "error: optimizer: option 'schedule' = 'exp' is not a valid choice; valid choices: "
                         "'constant' | 'cosine' | 'linear' | 'rsqrt'"),
    "unknown task": ([SMOKE, "--config.task.name=nope"],
                     "error: unknown task 'nope'; valid choices: byte_lm, even_token_prediction"),
    "unknown variant": (["--config=configs/pi.py:urpe,big"],
                        "ValueError: config arg: unknown variant(s) big; valid variants: smoke"),
    "missing config file": (["--config=configs/nope.py"], "No such file or directory: 'configs/nope.py'"),
    "heads do not divide width": ([SMOKE, "--config.model.num_heads=3"],
                                  "error: model: num_heads (3) must divide d_model (16), or set head_dim"),
    "batch not divisible by data parallelism": (
        [SMOKE, "--config.train.batch_size=6"],
        "error: train: batch_size (6) must be divisible by the data-parallel size 8 (mesh axes data, fsdp"),
    "mesh does not match devices": ([SMOKE, "--config.mesh.data=3"],
                                    "error: mesh: {'data': 3, 'fsdp': 1, 'tensor': 1} needs 3 devices, but 8 are "
                                    "available"),
    "remote workdir without a local log_dir": (
        [SMOKE, "--workdir=gs://bucket/run"],
        "error: train: log_dir must name a local directory when the workdir is remote (gs://bucket/run)"),
    "bad sharding rule": ([SMOKE, "--config.sharding_rules.embed=model"],
                          "error: sharding_rules: 'embed' -> 'model' is not a mesh axis; valid choices: data, fsdp, "
                          "tensor"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_exits_2_with_one_line_naming_the_valid_choices(case, tmp_path):
  args, message = BAD_CONFIGS[case]
  result = run_cli(f"--workdir={tmp_path}", *args, devices=8, timeout=120)  # a --workdir in args wins
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "checkpoints").exists()  # nothing was trained


def final_state(workdir):
  checkpointer = Checkpointer(str(workdir / "checkpoints"), max_to_keep=100)
  step = checkpointer.latest_step()
  state = checkpointer.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  checkpointer.close()
  return step, state


def logged_steps(workdir) -> list[int]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]


KILL_RUN = ("--config.train.steps=120", "--config.train.checkpoint_every=10", "--config.train.log_every=1",
            "--config.train.progress_bar=false")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  result = run_cli(SMOKE, *KILL_RUN, f"--config.train.data_dir={data_dir}", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return final_state(workdir)


def kill_at_step_then_resume(tmp_path, data_dir, kill_step: int):
  workdir = tmp_path / f"killed_at_{kill_step}"
  process = launch(SMOKE, *KILL_RUN, f"--config.train.data_dir={data_dir}", f"--workdir={workdir}")
  deadline = time.monotonic() + 240
  while max(logged_steps(workdir), default=0) < kill_step:
    assert process.poll() is None, "the run ended before it could be killed"
    assert time.monotonic() < deadline
    time.sleep(0.005)
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  killed_at = max(logged_steps(workdir))
  assert killed_at < 120, "the kill came too late to interrupt the run"
  result = run_cli(SMOKE, *KILL_RUN, f"--config.train.data_dir={data_dir}", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert logged_steps(workdir) == [s for s in range(1, 121)] + [120]  # the log reads as one run (+ final eval)
  return final_state(workdir)


def assert_states_bit_identical(a, b):
  (step_a, state_a), (step_b, state_b) = a, b
  assert step_a == step_b == 120
  leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # params, optimizer moments, step, RNG counters: bit for bit


def test_kill_9_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path, data_dir, uninterrupted):
  kill_step = random.Random().randint(5, 80)
  print(f"killing at step >= {kill_step}")
  assert_states_bit_identical(kill_at_step_then_resume(tmp_path, data_dir, kill_step), uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("kill_step", [3, 19, 41, 77, 99])
def test_kill_9_at_several_steps(tmp_path, data_dir, uninterrupted, kill_step):
  assert_states_bit_identical(kill_at_step_then_resume(tmp_path, data_dir, kill_step), uninterrupted)


SAVE_THEN_BLOCK = """
import sys, time
import numpy as np
from zoo.train.checkpoint import Checkpointer
checkpointer = Checkpointer(sys.argv[1], max_to_keep=5)
checkpointer.save(1, {"w": np.arange(1000, dtype=np.float32)})
checkpointer.wait()
checkpointer.save(2, {"w": np.random.default_rng(0).random(50_000_000, dtype=np.float32)})  # 200 MB
print("saving", flush=True)
time.sleep(120)
"""


def test_a_save_killed_midway_leaves_the_previous_checkpoint_restorable(tmp_path):
  directory = tmp_path / "checkpoints"
  process = subprocess.Popen([sys.executable, "-c", SAVE_THEN_BLOCK, str(directory)], cwd=REPO, env=cli_env(),
                             stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline().strip() == "saving"
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  assert any("tmp" in path.name for path in directory.iterdir()), "the kill did not land during the save"
  checkpointer = Checkpointer(str(directory), max_to_keep=5)
  assert checkpointer.latest_step() == 1
  restored = checkpointer.restore(1, {"w": jax.ShapeDtypeStruct((1000,), np.float32)})
  np.testing.assert_array_equal(restored["w"], np.arange(1000, dtype=np.float32))
  checkpointer.close()


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_of_four_devices_match_one_device(tmp_path, data_dir):
  workdir, port = tmp_path / "two_processes", free_port()
  args = (SMOKE, "--config.train.steps=4", "--config.train.log_every=1", "--config.mesh.data=2",
          "--config.mesh.fsdp=2", "--config.mesh.tensor=2", f"--config.train.data_dir={data_dir}",
          f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2")
  processes = [launch(*args, f"--process_id={i}", devices=4) for i in range(2)]
  for process in processes:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
  one = tmp_path / "one_device"
  loop.train_and_evaluate(smoke_config(data_dir, steps=4, log_every=1), str(one), devices=jax.devices()[:1])
  read = lambda w: [json.loads(line)["loss"] for line in open(w / "metrics.jsonl") if '"loss"' in line]
  np.testing.assert_allclose(read(workdir), read(one), rtol=2e-5)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs the tpu extra (libtpu)")
def test_fit_check_compiles_the_train_step_for_a_tpu_topology(tmp_path, data_dir):
  result = run_cli(SMOKE, "--aot_topology=v5e:2x2", f"--config.train.data_dir={data_dir}", "--config.mesh.data=2",
                   "--config.mesh.tensor=2", timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  line = [line for line in result.stdout.splitlines() if line.startswith("aot v5e:2x2")]
  assert line, result.stdout
  assert "(4 × TPU v5 lite, mesh {'data': 2, 'fsdp': 1, 'tensor': 2})" in line[0]
  assert line[0].endswith("of 16.000 GiB HBM: fits")
