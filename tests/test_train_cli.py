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

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, cli_env, default_or_slow, smoke_config, wait_until

from zoo.train import loop
from zoo.train.checkpoint import Checkpointer

SMOKE = "--config=configs/pi.py:urpe,smoke"


def launch(*args, devices: int = 1, **kwargs) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", "launch.train", *args], cwd=REPO, env=cli_env(devices),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def run_cli(*args, devices: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "launch.train", *args], cwd=REPO, env=cli_env(devices),
                        capture_output=True, text=True, timeout=timeout)


BAD_CONFIGS = {
    "unknown key": ([SMOKE, "--config.train.stepz=3"], "error: unknown config key 'stepz' (did you mean 'steps'?)"),
    "unknown encoding": ([SMOKE, "--config.model.positional.name=nope"],
                         "error: unknown positional encoding 'nope'; valid choices: alibi, cope, fire, fox, "
                         "kerple_log, kerple_power, lappe, learned, memory_rpe, none, rope"),
    "invalid schedule": ([SMOKE, "--config.optimizer.schedule=exp"],
                         "error: optimizer: option 'schedule' = 'exp' is not a valid choice; valid choices: "
                         "'constant' | 'cosine' | 'linear' | 'rsqrt'"),
    "unknown task": ([SMOKE, "--config.task.name=nope"],
                     "error: unknown task 'nope'; valid choices: bucket_sort, byte_lm, duplicate_string, "
                     "even_token_prediction"),
    "unknown variant": (["--config=configs/pi.py:urpe,big"],
                        "ValueError: config arg: unknown variant(s) big; valid variants: smoke"),
    "missing config file": (["--config=configs/nope.py"], "No such file or directory: 'configs/nope.py'"),
    "heads do not divide width": ([SMOKE, "--config.model.attention.num_heads=3"],
                                  "error: model: attention.num_heads (3) must divide d_model (16), or set "
                                  "attention.head_dim"),
    "a key of the flat model config": ([SMOKE, "--config.model.pe=rope"],
                                       "error: model.pe moved to model.positional.name"),
    "unknown attention option": ([SMOKE, "--config.model.attention.num_head=3"],
                                 "error: model 'encoder': attention: unknown option(s) 'num_head'; valid options: "
                                 "num_heads, head_dim,"),
    "batch not divisible by data parallelism": (
        [SMOKE, "--config.train.batch_size=6"],
        "error: train: batch_size (6) must be divisible by the data-parallel size 8 (mesh axes data, fsdp"),
    "mesh does not match devices": ([SMOKE, "--config.mesh.data=3"],
                                    "error: mesh: {'data': 3, 'fsdp': 1, 'tensor': 1} needs 3 devices, but 8 are "
                                    "available"),
    "remote workdir without the gcs extra": (
        [SMOKE, "--workdir=gs://bucket/run"],
        "error: train: a gs:// workdir or log_dir needs the gcs extra (pip install -e '.[gcs]'): gcsfs, "
        "google.cloud.storage not installed"),
    "unknown encoding option": ([SMOKE, "--config.model.positional.options.max_distanc=4"],
                                "error: positional encoding 'urpe': unknown option(s) 'max_distanc'; valid options:"),
    "unknown model option": ([SMOKE, "--config.model.num_layer=3"],
                             "error: model 'encoder': unknown option(s) 'num_layer'; valid options: vocab_size, "),
    "unknown new section": ([SMOKE, "--config.trainer.steps=3"], "error: unknown config key 'trainer'"),
    "task files missing": (["--config=configs/graph_zinc.py:spd,smoke"],
                           "error: task 'molecules': '.' is not a file; expected a CSV file with columns 'smiles'"),
    "bad sharding rule": ([SMOKE, "--config.sharding_rules.embed=model"],
                          "error: sharding_rules: 'embed' -> 'model' is not a mesh axis; valid choices: data, fsdp, "
                          "tensor"),
}


# One row per stage that refuses (the config's keys, the registry, the mesh, the task's files) by default; the slow
# suite runs them all (tests/test_config_errors.py checks the model configs' refusals in-process).
@pytest.mark.parametrize("case", default_or_slow(BAD_CONFIGS, ("unknown key", "unknown encoding",
                                                               "batch not divisible by data parallelism",
                                                               "task files missing")))
def test_bad_config_exits_2_with_one_line_naming_the_valid_choices(case, tmp_path):
  args, message = BAD_CONFIGS[case]
  if case == "remote workdir without the gcs extra" and importlib.util.find_spec("gcsfs"):
    pytest.skip("the gcs extra is installed here")
  result = run_cli(f"--workdir={tmp_path}", *args, devices=8, timeout=120)  # a --workdir in args wins
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "checkpoints").exists()  # nothing was trained


def test_every_model_and_encoding_option_can_be_set_from_the_command_line(tmp_path, data_dir):
  """Options the config file does not list (head_dim, the encoding's max_distance) are dotted overrides too."""
  result = run_cli("--config=configs/pi.py:rpe,smoke", "--config.model.positional.options.max_distance=4",
                   "--config.model.attention.head_dim=4", "--config.train.steps=1",
                   f"--config.train.data_dir={data_dir}", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  _, state = final_state(tmp_path)
  shapes = {np.shape(leaf) for leaf in jax.tree.leaves(state["params"])}
  assert (2, 9) in shapes  # the per-lag table: 2 heads × lags -4..4
  assert (16, 2, 4) in shapes  # query kernel: d_model 16 → 2 heads × head_dim 4


def test_profile_steps_writes_a_trace_under_the_log_dir(tmp_path, data_dir):
  """As users run it, in a process of its own: jax.profiler's tracer has crashed a test worker that had compiled
  for TPU topologies and run many models before."""
  result = run_cli(SMOKE, "--config.train.steps=4", "--config.train.profile_steps=2:4",
                   f"--config.train.data_dir={data_dir}", f"--workdir={tmp_path / 'profiled'}")
  assert result.returncode == 0, result.stderr[-3000:]
  traces = list((tmp_path / "profiled" / "profile").rglob("*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0, traces


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


# The interrupted runs draw every kind of randomness a step can: SPE noise, FAVOR+ features and dropout.
KILL_RUN = ("--config=configs/pi.py:spe_sine,smoke", "--config.model.attention.impl=linear",
            "--config.model.dropout=0.1", "--config.train.steps=120", "--config.train.checkpoint_every=10",
            "--config.train.log_every=1", "--config.train.progress_bar=false")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  result = run_cli(*KILL_RUN, f"--config.train.data_dir={data_dir}", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return final_state(workdir)


def interrupt_at_step(workdir, data_dir, at_step: int, sig: signal.Signals) -> subprocess.CompletedProcess:
  """Starts the 120-step run, sends `sig` once it has logged step `at_step`, and waits for it to end."""
  process = launch(*KILL_RUN, f"--config.train.data_dir={data_dir}", f"--workdir={workdir}")
  wait_until(lambda: max(logged_steps(workdir), default=0) >= at_step, process)
  os.kill(process.pid, sig)
  stdout, stderr = process.communicate(timeout=120)
  assert max(logged_steps(workdir)) < 120, "the signal came too late to interrupt the run"
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def resume(workdir, data_dir):
  """Reruns the same command in `workdir` to the end; the final state, after checking the log reads as one run."""
  result = run_cli(*KILL_RUN, f"--config.train.data_dir={data_dir}", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert logged_steps(workdir) == [s for s in range(1, 121)] + [120]  # the log reads as one run (+ final eval)
  return final_state(workdir)


def kill_at_step_then_resume(tmp_path, data_dir, kill_step: int):
  workdir = tmp_path / f"killed_at_{kill_step}"
  interrupt_at_step(workdir, data_dir, kill_step, signal.SIGKILL)
  return resume(workdir, data_dir)


def assert_states_bit_identical(a, b):
  (step_a, state_a), (step_b, state_b) = a, b
  assert step_a == step_b == 120
  leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # params, optimizer moments, step, RNG counters: bit for bit


@pytest.mark.slow  # the default suite resumes bit-identically after SIGTERM (below); kill -9 runs in the slow one
def test_kill_9_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path, data_dir, uninterrupted):
  kill_step = random.Random().randint(5, 80)
  print(f"killing at step >= {kill_step}")
  assert_states_bit_identical(kill_at_step_then_resume(tmp_path, data_dir, kill_step), uninterrupted)


def test_sigterm_saves_a_checkpoint_at_that_step_exits_143_and_resumes_bit_identical(tmp_path, data_dir,
                                                                                      uninterrupted):
  at_step = random.Random().randint(5, 80)
  print(f"SIGTERM at step >= {at_step}")
  workdir = tmp_path / "preempted"
  result = interrupt_at_step(workdir, data_dir, at_step, signal.SIGTERM)
  assert result.returncode == 143, result.stderr[-3000:]  # 128 + SIGTERM: restarted, not read as a finished run
  stops = [line for line in result.stdout.splitlines() if line.startswith("preempted:")]
  assert len(stops) == 1, result.stdout[-3000:]
  stopped_at = int(stops[0].split("stopped at step ")[1].split()[0])
  assert at_step <= stopped_at == max(logged_steps(workdir))  # the last step it ran (it logs every step)
  assert final_state(workdir)[0] == stopped_at  # saved there, whether or not a regular checkpoint step (every 10)
  assert "summary:" not in result.stdout  # not mistaken for a finished run
  assert_states_bit_identical(resume(workdir, data_dir), uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("kill_step", [3, 19, 41, 77, 99])
def test_kill_9_at_several_steps(tmp_path, data_dir, uninterrupted, kill_step):
  assert_states_bit_identical(kill_at_step_then_resume(tmp_path, data_dir, kill_step), uninterrupted)


def truncate_data_file(step_dir) -> None:
  """Cuts the state's array data file (orbax's OCDBT store under state/d/) in half."""
  (data_file,) = (step_dir / "state" / "d").iterdir()
  with open(data_file, "r+b") as f:
    f.truncate(data_file.stat().st_size // 2)


def test_a_damaged_checkpoint_is_set_aside_and_the_previous_step_resumed(tmp_path, data_dir):
  run = lambda workdir, steps: run_cli(SMOKE, f"--config.train.steps={steps}", "--config.train.checkpoint_every=2",
                                       "--config.train.log_every=1", "--config.train.progress_bar=false",
                                       "--config.train.max_to_keep=10", f"--config.train.data_dir={data_dir}",
                                       f"--workdir={workdir}")
  workdir, clean = tmp_path / "damaged", tmp_path / "clean"
  assert run(workdir, 4).returncode == 0 and run(clean, 6).returncode == 0
  truncate_data_file(workdir / "checkpoints" / "4")
  result = run(workdir, 6)
  assert result.returncode == 0, result.stderr[-3000:]
  warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: checkpoint")]
  assert len(warnings) == 1 and warnings[0].startswith("warning: checkpoint step 4 is damaged ("), result.stderr
  assert len(warnings[0]) < 600 and "tensorstore_spec" not in warnings[0]
  assert (tmp_path / "damaged" / "damaged_checkpoints" / "4").is_dir()  # kept for inspection, not deleted
  assert logged_steps(workdir) == [1, 2, 3, 4, 5, 6, 6]  # resumed after step 2; the log reads as one run
  (step, state), (clean_step, clean_state) = final_state(workdir), final_state(clean)
  assert step == clean_step == 6
  for x, y in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(clean_state["params"]), strict=True):
    np.testing.assert_array_equal(x, y)

  for step_dir in (workdir / "checkpoints").iterdir():
    if step_dir.name.isdigit():
      truncate_data_file(step_dir)
  result = run(workdir, 8)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith("error: no intact checkpoint in "), result.stderr[-3000:]
  assert "Traceback" not in result.stderr


SAVE_THEN_BLOCK = """
import signal, sys
import numpy as np
from zoo.train.checkpoint import Checkpointer
checkpointer = Checkpointer(sys.argv[1], max_to_keep=5)
checkpointer.save(1, {"w": np.arange(1000, dtype=np.float32)})
checkpointer.wait()
checkpointer.save(2, {"w": np.random.default_rng(0).random(50_000_000, dtype=np.float32)})  # 200 MB
print("saving", flush=True)
signal.pause()  # the save goes on in its thread until the test's SIGKILL
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


@pytest.mark.slow  # two jax.distributed processes compiling for four devices each: a long journey
@pytest.mark.parametrize("slices", [1, 2])
def test_two_processes_of_four_devices_match_one_device(tmp_path, data_dir, slices):
  """With slices=2 each process stands for one slice (CPU devices have no slice_index): the data axis crosses them."""
  workdir, port = tmp_path / "two_processes", free_port()
  args = (SMOKE, "--config.train.steps=4", "--config.train.log_every=1", f"--config.mesh.slices={slices}",
          "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
          f"--config.train.data_dir={data_dir}", f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}",
          "--num_processes=2")
  processes = [launch(*args, f"--process_id={i}", devices=4) for i in range(2)]
  for process in processes:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
  one = tmp_path / "one_device"
  loop.train_and_evaluate(smoke_config(data_dir, steps=4, log_every=1), str(one), devices=jax.devices()[:1])
  read = lambda w: [json.loads(line)["loss"] for line in open(w / "metrics.jsonl") if '"loss"' in line]
  np.testing.assert_allclose(read(workdir), read(one), rtol=2e-5)


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(tmp_path, data_dir):
  workdir, port = tmp_path / "two_processes", free_port()
  args = (*KILL_RUN, "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
          f"--config.train.data_dir={data_dir}", f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}",
          "--num_processes=2")
  processes = [launch(*args, f"--process_id={i}", devices=4) for i in range(2)]
  wait_until(lambda: max(logged_steps(workdir), default=0) >= 10, *processes)
  os.kill(processes[1].pid, signal.SIGTERM)  # the notice reaches one process; JAX's preemption sync tells the other
  outputs = [p.communicate(timeout=120) for p in processes]
  assert [p.returncode for p in processes] == [143, 143], outputs[1][1][-3000:]
  stops = [line for line in outputs[0][0].splitlines() if line.startswith("preempted:")]
  assert len(stops) == 1, outputs[0][0][-3000:]
  stopped_at = int(stops[0].split("stopped at step ")[1].split()[0])
  checkpointer = Checkpointer(str(workdir / "checkpoints"), max_to_keep=100)
  assert 10 <= stopped_at < 120 and checkpointer.latest_step() == stopped_at  # committed: both processes saved
  checkpointer.close()


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs the tpu extra (libtpu)")
@pytest.mark.parametrize("mesh,expected", [
    (("--config.mesh.data=2", "--config.mesh.tensor=2"),
     "aot v5e:2x2 (4 × TPU v5 lite, mesh {'data': 2, 'fsdp': 1, 'tensor': 2})"),
    pytest.param(("--config.mesh.slices=2", "--config.mesh.data=4", "--config.mesh.tensor=2"),
                 "aot v5e:2x2 × 2 slices (8 × TPU v5 lite, mesh {'data': 4, 'fsdp': 1, 'tensor': 2})",
                 marks=pytest.mark.slow),
], ids=["one_slice", "two_slices_over_dcn"])
def test_fit_check_compiles_the_train_step_for_a_tpu_topology(tmp_path, data_dir, mesh, expected):
  result = run_cli(SMOKE, "--aot_topology=v5e:2x2", f"--config.train.data_dir={data_dir}", *mesh, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  line = [line for line in result.stdout.splitlines() if line.startswith("aot v5e:2x2")]
  assert line, result.stdout
  assert expected in line[0]
  assert "of 16.000 GiB HBM: fits;" in line[0]
  assert line[0].endswith("attention xla, 0 Mosaic kernel calls")  # the config's impl, reported as compiled
