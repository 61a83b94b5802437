"""Shared test helpers: tiny model configs, jitted entry points, the reference numbers of public libraries."""

import json
import os
import pathlib
import subprocess
import time
from collections.abc import Callable

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for every test process — the xdist workers and the command-line runs the tests
# start, which inherit this environment — so that a program compiled once (a smoke config's train step, resumed in a
# second process) is read back instead of compiled again. Measured on an idle 2-core machine, cache empty at the
# start: the default suite 27 min 35 s against 32 min 27 s without it (test_train_cli.py alone 126 s against 191 s).
# Executables with host callbacks (Pallas interpret mode) are never cached; the key covers jax's version and flags.
# A size limit makes jax lock the directory (filelock) around each read and write, so no worker reads a half-written
# entry; an unreadable one is a warning and a fresh compile. It lives in the repository's git-ignored .cache/, not the
# system temp dir, so that a test run leaves nothing there (tests/test_leftovers.py checks the commands do not either).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path(__file__).parent.parent / ".cache" / "xla-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))
# XLA's CPU backend at optimisation level 1 for the code it emits: the tests' models are tiny, so compiling is most of
# their time and running little. Measured (building, compiling and running the gradient of four tiny decoders, twice
# each way, interleaved): 11.9–14.5 s at level 0 against 21.4–21.8 s at the default level. Level 0 itself is not used:
# it compiled the chunked core's gradient with a relative-position table to NaN (test_scan_remat's chunked case;
# finite at levels 1 and 2 and op by op under jax.disable_jit) and was ≈ 20 % faster than 1 on test_scan_remat.py +
# test_fox.py (33–34 s against 40.5 s). Results are the same computations (no fast-math at any level); the command-line
# runs the tests start inherit it.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=1")
# The ahead-of-time TPU compiles (test_tpu_compile.py, the fit check) load libtpu, which logs to /tmp/tpu_logs whatever
# TMPDIR says; "disabled" keeps its log on stderr only (measured: two files per run without it, none with it).
os.environ.setdefault("TPU_LOG_DIR", "disabled")

import jax  # noqa: E402

# Eight simulated CPU devices for the sharding tests; everything else runs on the first one.
jax.config.update("jax_num_cpu_devices", 8)
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from zoo import models  # noqa: E402
from zoo.models.config import merge  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
REPO = pathlib.Path(__file__).parent.parent


def pytest_configure(config):
  """pytest's tmp_path folders go under the repository's git-ignored .cache/ (emptied at each run's start), not
  pytest-of-<user> in the system temp dir: a test run leaves nothing there."""
  if config.option.basetemp is None and not hasattr(config, "workerinput"):  # xdist workers get theirs from it
    basetemp = REPO / ".cache" / "pytest-tmp"
    basetemp.mkdir(parents=True, exist_ok=True)  # xdist places its workers' folders in it before pytest makes it
    config.option.basetemp = str(basetemp)

# Small enough to compile in well under a second, big enough to have several heads and layers.
TINY = dict(vocab_size=32, num_layers=2, d_model=16, max_length=48, attention=dict(num_heads=2), mlp=dict(dim=32))


def tiny(pe: str | None = None, base: dict = TINY, **overrides) -> dict:
  """`base` (TINY) with encoding `pe` and `overrides`; an override of a section (`attention=dict(impl="linear")`)
  updates base's section key by key."""
  if pe is not None:
    overrides["positional"] = {"name": pe, **overrides.get("positional", {})}
  return merge(base, overrides)


# One encoding per term type: an absolute embedding (a learned table), transform_qk (a rotation), a table bias (T5's
# buckets), a closed-form bias (ALiBi), prob_scale (URPE), a content term (CoPE), a relation (SPD + URPE on graphs).
# The registry matrices (encoding x property, x family, x core) run these in the default suite and every registered
# encoding in the slow one; each encoding's terms against their independent reference stay default (no compilation:
# cheap), and so does the stochastic kind's own property (SPE's shift invariance in expectation).
REPRESENTATIVE_ENCODINGS = ("learned", "rope", "t5_bias", "alibi", "urpe", "cope", "spd_urpe")


def representative_or_slow(pe: str, *values):
  """A pytest.param of `values` (default: just `pe`), marked slow unless encoding `pe` is representative."""
  return pytest.param(*(values or (pe,)), marks=() if pe in REPRESENTATIVE_ENCODINGS else pytest.mark.slow)


def default_or_slow(values, default) -> list:
  """pytest.params of `values`, each marked slow unless it is in `default` (the default suite's representatives)."""
  return [pytest.param(value, marks=() if value in default else pytest.mark.slow) for value in values]


def per_token_options(family: str) -> dict:
  """Options that make `family` output per-token logits (the encoder's token head; the decoder always does)."""
  return dict(head="token", num_classes=5) if family == "encoder" else {}


def tiny_model(family: str, pe: str, seed: int = 0, **overrides):
  return models.build(family, tiny(pe, **overrides), seed=seed)


def cli_env(devices: int = 1) -> dict:
  """The environment of a command the tests run: the CPU with `devices` devices, and this process's XLA flags."""
  flags = f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={devices}"
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}


@nnx.jit
def forward(model, tokens, positions, mask):
  """model(tokens, positions=..., mask=...) compiled; positions / mask may be None."""
  return model(tokens, positions=positions, mask=mask)


@nnx.jit
def extend(model, tokens, cache):
  return model.extend(tokens, cache)


def random_tokens(seed: int, shape, vocab: int = TINY["vocab_size"]):
  return jax.random.randint(jax.random.key(seed), shape, 0, vocab)


def wait_until(condition: Callable[[], bool], *processes: subprocess.Popen, timeout: float = 240) -> None:
  """Returns as soon as `condition()` holds (a run has logged a step, a server answers). Between checks it waits on
  the first process's exit for at most 10 ms instead of sleeping, so a process that ends first fails the test at
  once, with its stderr."""
  deadline = time.monotonic() + timeout
  while not condition():
    for process in processes:
      if process.poll() is not None:
        stderr = process.communicate()[1] or ""
        raise AssertionError(f"{process.args[:4]} ended (exit {process.returncode}) first: {stderr[-3000:]}")
    try:
      processes[0].wait(timeout=0.01)
    except subprocess.TimeoutExpired:
      assert time.monotonic() < deadline, f"not reached within {timeout} s"


@pytest.fixture(scope="session")
def reference_numbers():
  """Numbers from Hugging Face transformers and x-transformers (see fixtures/make_reference_fixtures.py)."""
  return json.loads((FIXTURES / "reference_numbers.json").read_text())


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """One tfds data directory per test session (each xdist worker has its own)."""
  return str(tmp_path_factory.mktemp("tfds"))


def smoke_config(data_dir: str, pe: str = "urpe", **train) -> dict:
  """configs/pi.py's smoke variant as a plain dict, writing its data under `data_dir`."""
  from configs import pi  # noqa: PLC0415 — the repository's configs/ (the tests run from the repository root)

  config = pi.get_config(f"{pe},smoke").to_dict()
  config["train"].update(data_dir=data_dir, progress_bar=False, **train)
  return config
