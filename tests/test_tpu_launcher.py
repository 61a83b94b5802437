"""`python -m launch.tpu` against a fake `gcloud` / `kubectl` on PATH that records its calls: the commands of each
verb, queued-resource polling, detached per-worker starts, a preemption that leads to re-create + relaunch,
giving up, `--dry_run` running nothing; and the GKE JobSet manifest, parsed as YAML and checked field by field."""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml
from conftest import REPO

from launch.tpu import gcloud

ZONE = "europe-west4-b"
PROJECT = "my-project-1"  # the fake gcloud's configured project (no --project in the commands below)
TPU = gcloud.Slice("zoo-v5e", ZONE, PROJECT)
WHERE = ["--zone=europe-west4-b", f"--project={PROJECT}"]
CREATE = ["gcloud", "compute", "tpus", "queued-resources", "create", "zoo-v5e", "--node-id=zoo-v5e",
          "--accelerator-type=v5litepod-16", "--runtime-version=v2-alpha-tpuv5-lite", *WHERE, "--spot"]
DESCRIBE = ["gcloud", *gcloud.describe(TPU)[1:]]
DELETE = ["gcloud", "compute", "tpus", "queued-resources", "delete", "zoo-v5e", *WHERE, "--force", "--quiet"]
# gcloud's answers to a describe: the queued resource does not exist; a failure that says nothing about it.
GONE = {"rc": 1, "stderr": "ERROR: (gcloud.compute.tpus.queued-resources.describe) NOT_FOUND: Resource "
                           "'projects/p/locations/europe-west4-b/queuedResources/zoo-v5e' was not found"}
FLAKY = {"rc": 1, "stderr": "ERROR: (gcloud.compute.tpus.queued-resources.describe) There was a problem refreshing "
                            "your current auth tokens: ('Connection aborted.', RemoteDisconnected())"}
SLICE_OPTIONS = ["--accelerator=v5litepod-16", "--runtime=v2-alpha-tpuv5-lite", "--spot"]
RUN = ["run", "zoo-v5e", f"--zone={ZONE}", "--workdir=gs://my-bucket/zoo/pi", "--config=configs/pi.py:urpe",
       "--config.train.steps=2000"]
TRAIN = ".venv/bin/python -m launch.train --distributed --workdir=gs://my-bucket/zoo/pi --config=configs/pi.py:urpe " \
        "--config.train.steps=2000"  # overrides after --config, the user's last


class FakeCloud:
  def __init__(self, directory):
    self.directory = directory
    self.bin = directory / "bin"
    self.bin.mkdir()
    self.configure(project=PROJECT)
    for program in ("gcloud", "kubectl", "docker"):
      wrapper = self.bin / program
      wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {REPO / 'tests' / 'fake_cloud.py'} {program} \"$@\"\n")
      wrapper.chmod(0o755)

  def configure(self, **properties) -> None:
    """gcloud's local config (`gcloud config set`): compute/zone as `zone`, project."""
    names = {"zone": "compute/zone", "project": "project"}
    (self.directory / "gcloud_config.json").write_text(json.dumps({names[k]: v for k, v in properties.items()}))

  def scenario(self, **outputs) -> None:
    """Answers by command: describe=[states...], status=[worker lines...]."""
    matches = {"describe": "queued-resources describe", "status": "kill -0"}
    rules = [{"match": matches[name], "outputs": list(values)} for name, values in outputs.items()]
    (self.directory / "scenario.json").write_text(json.dumps(rules))

  def launcher(self, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "FAKE_CLOUD_DIR": str(self.directory),
           "TMPDIR": str(self.directory)}
    return subprocess.run([sys.executable, "-m", "launch.tpu", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)

  def calls(self) -> list[list[str]]:
    path = self.directory / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def cloud(tmp_path):
  return FakeCloud(tmp_path)


def kind(call: list[str]) -> str:
  """create / describe / delete / scp / start / status / logs / stop, for comparing call sequences."""
  if call[:4] == ["gcloud", "compute", "tpus", "queued-resources"]:
    return call[4]
  if call[3:5] == ["tpu-vm", "scp"]:
    return "scp"
  if call[3:5] == ["tpu-vm", "describe"]:
    return "address"
  command = next(a for a in call if a.startswith("--command="))
  return {"nohup setsid": "start", "kill -TERM": "stop", "kill -0": "status", "tail -n": "logs"}[
      next(marker for marker in ("nohup setsid", "kill -TERM", "kill -0", "tail -n") if marker in command)]


def launch_ids(calls) -> list[str]:
  return [re.search(r"zoo_runs/(\d{8}-\d{6}-[0-9a-f]{6})", c[-1]).group(1) for c in calls if kind(c) == "start"]


def test_create_queues_a_spot_slice_and_polls_until_active(cloud):
  cloud.scenario(describe=["WAITING_FOR_RESOURCES", "PROVISIONING", "ACTIVE"])
  result = cloud.launcher("create", "zoo-v5e", f"--zone={ZONE}", *SLICE_OPTIONS, "--poll=0")
  assert result.returncode == 0, result.stderr
  assert cloud.calls() == [CREATE, DESCRIBE, DESCRIBE, DESCRIBE]
  assert "zoo-v5e: WAITING_FOR_RESOURCES\nzoo-v5e: PROVISIONING\nzoo-v5e: ACTIVE" in result.stderr


def test_zone_and_project_default_to_gclouds_and_neither_set_is_one_line(cloud):
  cloud.configure(zone="us-east5-a", project="other-project")
  result = cloud.launcher("create", "zoo-v5e", *SLICE_OPTIONS, "--dry_run")
  assert result.returncode == 0 and shlex.split(result.stdout.splitlines()[0]) == [
      *CREATE[:-3], "--zone=us-east5-a", "--project=other-project", "--spot"]
  result = cloud.launcher("delete", "zoo-v5e", f"--zone={ZONE}", "--project=my-project-2", "--dry_run")
  assert shlex.split(result.stdout.splitlines()[0])[-3:] == [f"--zone={ZONE}", "--project=my-project-2",
                                                              "--format=value(state.state)"]  # the flags win
  for properties, missing in (({"project": "p-123456"}, "zone"), ({"zone": ZONE}, "project")):
    cloud.configure(**properties)
    result = cloud.launcher("status", "zoo-v5e", "--dry_run")
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr == (f"error: no --{missing}, and gcloud has no default {missing}: pass --{missing}="
                             f"{missing.upper()} or set gcloud's default: gcloud config set "
                             f"{'compute/zone' if missing == 'zone' else 'project'} {missing.upper()}\n")
  assert cloud.calls() == []


@pytest.mark.parametrize("tier,flags", [("--reserved", ["--reserved"]), (None, [])], ids=["reserved", "on_demand"])
def test_reserved_and_on_demand_slices(cloud, tier, flags):
  cloud.scenario(describe=["ACTIVE"])
  options = ["--accelerator=v5litepod-16", "--runtime=v2-alpha-tpuv5-lite"] + ([tier] if tier else [])
  assert cloud.launcher("create", "zoo-v5e", f"--zone={ZONE}", *options).returncode == 0
  assert cloud.calls()[0] == CREATE[:-1] + flags


def test_run_copies_a_per_launch_archive_and_starts_training_detached_on_every_worker(cloud):
  cloud.scenario(describe=["ACTIVE"])
  for _ in range(2):
    result = cloud.launcher(*RUN)
    assert result.returncode == 0, result.stderr
  calls = cloud.calls()
  assert [kind(c) for c in calls] == ["describe", "scp", "start"] * 2
  first, second = launch_ids(calls)
  assert first != second  # two launches never share an archive or a run directory
  scp, start = calls[1], calls[2]
  assert scp[6:] == [f"zoo-v5e:zoo-{first}.tgz", *WHERE, "--worker=all"]
  assert scp[5] == str(cloud.directory / f"zoo-v5e-zoo-{first}.tgz")
  assert not os.path.exists(scp[5])  # the local archive is removed once copied
  assert start[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "zoo-v5e", *WHERE] and start[8] == "--worker=all"
  script = start[9].removeprefix("--command=")
  run_dir = f'"$HOME"/zoo_runs/{first}'
  assert f'tar -C {run_dir} -xzf "$HOME"/zoo-{first}.tgz' in script
  assert "uv pip install -q --python .venv/bin/python --require-hashes -r launch/tpu/requirements-tpu.txt" in script
  detached = script.split("; nohup setsid bash -c ", 1)[1]
  job, redirect = shlex.split(detached.split(" & ")[0])[0], detached.split(" & ")[1]
  assert job.startswith("trap : TERM; ") and f"{TRAIN} > {run_dir}/train.log 2>&1" in job
  copy = f'gcloud storage cp {run_dir}/train.log gs://my-bucket/zoo/pi/logs/{first}/"$(hostname)"/'
  assert copy in job
  assert redirect == f"echo $! > {run_dir}/pid"
  assert "> /dev/null 2>&1 < /dev/null" in detached  # nothing ties the job to the ssh session


def test_status_logs_stop_and_delete_issue_their_commands(cloud):
  cloud.scenario(describe=["ACTIVE"], status=["t1v-n-0 running\nt1v-n-1 running"])
  status = cloud.launcher("status", "zoo-v5e", f"--zone={ZONE}")
  assert status.stdout == "zoo-v5e: ACTIVE\nt1v-n-0 running\nt1v-n-1 running\n"
  for command in (["logs", "--lines=20"], ["stop"], ["delete"]):
    assert cloud.launcher(command[0], "zoo-v5e", f"--zone={ZONE}", *command[1:]).returncode == 0
  calls = cloud.calls()
  assert [kind(c) for c in calls] == ["describe", "status", "logs", "stop", "describe", "delete"]
  assert calls[2][-1] == "--command=" + gcloud.logs_script("", 20)
  assert 'tail -n 20 "$HOME"/zoo_runs/latest/train.log' in calls[2][-1]
  assert calls[3][-1] == "--command=" + gcloud.stop_script("")
  assert 'kill -TERM -- -"$(cat "$d"/pid)"' in calls[3][-1] and 'd="$HOME"/zoo_runs/latest;' in calls[3][-1]
  assert calls[5] == DELETE


# The supervisor's journeys (several launches, each packing the checkout and checking the config) run in the slow
# suite; the default one walks `run` once (above), the dry runs and the manifests.
@pytest.mark.slow
def test_a_preempted_slice_is_recreated_and_the_same_command_relaunched(cloud):
  """A Spot slice taken back goes SUSPENDING, then SUSPENDED (the queued resource's real states)."""
  cloud.scenario(describe=["ACTIVE", "ACTIVE", "SUSPENDING", "SUSPENDED", "WAITING_FOR_RESOURCES", "ACTIVE", "ACTIVE"],
                 status=["t1v-n-0 running\nt1v-n-1 running", "t1v-n-0 finished\nt1v-n-1 exited"])
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0")
  assert result.returncode == 0, result.stderr
  calls = cloud.calls()
  assert [kind(c) for c in calls] == [
      "describe", "scp", "start", "describe", "status", "describe",  # running, then SUSPENDING
      "describe", "delete", "create", "describe", "describe",  # re-create, wait for ACTIVE
      "scp", "start", "describe", "status"]  # relaunch, finished
  assert calls[7] == DELETE and calls[8] == CREATE
  first, second = launch_ids(calls)
  assert calls[2][-1].replace(first, "ID") == calls[12][-1].replace(second, "ID")  # the same command
  assert "slice zoo-v5e is SUSPENDING" in result.stderr and f"supervise: {second} finished (attempt 2)" in result.stderr


def test_a_job_stopped_by_sigterm_on_an_active_slice_is_relaunched_not_failed(cloud):
  """A maintenance event's SIGTERM: launch.train saves and exits 143 (process 0 says `preempted:`, the others are
  `killed 143`), which GKE's podFailurePolicy restarts too; the slice stays ACTIVE, so only the job is relaunched."""
  cloud.scenario(describe=["ACTIVE"], status=["t1v-n-0 stopped\nt1v-n-1 killed 143", "t1v-n-0 finished"])
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0")
  assert result.returncode == 0, result.stderr
  assert [kind(c) for c in cloud.calls()] == ["describe", "scp", "start", "describe", "status",
                                              "describe", "scp", "start", "describe", "status"]
  assert "job stopped (attempt 1 of 5)" in result.stderr and "finished (attempt 2)" in result.stderr


@pytest.mark.slow
def test_supervise_gives_up_after_max_attempts(cloud):
  cloud.scenario(describe=["ACTIVE", "SUSPENDING", "SUSPENDED", "ACTIVE", "FAILED"])
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0", "--max_attempts=2")
  assert result.returncode == 1
  assert [kind(c) for c in cloud.calls()].count("start") == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: supervise: gave up after 2 attempts (the slice or job was lost each time); the "
                    "checkpoints stay in gs://my-bucket/zoo/pi: rerun the same command to continue"]


@pytest.mark.slow
def test_a_failed_job_is_not_relaunched_and_an_unreachable_one_is_asked_again(cloud):
  cloud.scenario(describe=["ACTIVE"], status=[{"rc": 255}, "t1v-n-0 failed 1\nt1v-n-1 running"])
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0")
  assert result.returncode == 1
  assert "error: supervise: training failed with exit status 1 on zoo-v5e; not relaunching" in result.stderr
  assert [kind(c) for c in cloud.calls()] == ["describe", "scp", "start", "describe", "status", "describe", "status"]


@pytest.mark.slow
def test_supervise_retries_a_failed_copy_or_start_with_backoff(cloud):
  """scp fails once, then the start's ssh: each failure repeats copy and start, after 0.2 s, then 0.4 s."""
  rules = [{"match": "tpu-vm scp", "outputs": [{"rc": 1}, "", ""]},
           {"match": "nohup setsid", "outputs": [{"rc": 255}, ""]},
           {"match": "queued-resources describe", "outputs": ["ACTIVE"]},
           {"match": "kill -0", "outputs": ["t1v-n-0 finished\nt1v-n-1 exited"]}]
  (cloud.directory / "scenario.json").write_text(json.dumps(rules))
  began = time.monotonic()
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0", "--retry_wait=0.2")
  assert result.returncode == 0, result.stderr
  assert time.monotonic() - began >= 0.6
  assert [kind(c) for c in cloud.calls()] == ["describe", "scp", "scp", "start", "scp", "start", "describe", "status"]
  retries = [line for line in result.stderr.splitlines() if "trying again" in line]
  assert [line.split(" failed ")[1] for line in retries] == [
      "(exit status 1); trying again in 0.2 s (retry 1 of 3)",
      "(exit status 255); trying again in 0.4 s (retry 2 of 3)"]
  assert "error" not in result.stderr


@pytest.mark.slow
def test_a_launch_that_cannot_be_copied_counts_as_an_attempt_and_plain_run_gives_up(cloud):
  rules = [{"match": "tpu-vm scp", "outputs": [{"rc": 1}]},
           {"match": "queued-resources describe", "outputs": ["ACTIVE"]}]
  (cloud.directory / "scenario.json").write_text(json.dumps(rules))
  result = cloud.launcher(*RUN, "--retry_wait=0", "--retries=1")
  assert result.returncode == 1 and [kind(c) for c in cloud.calls()] == ["describe", "scp", "scp"]
  assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
      "error: run: could not copy or start the launch on zoo-v5e after 2 tries"]
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0", "--retry_wait=0", "--retries=1",
                          "--max_attempts=2")
  assert result.returncode == 1 and [kind(c) for c in cloud.calls()].count("scp") == 2 + 4
  assert result.stderr.splitlines()[-1].startswith("error: supervise: gave up after 2 attempts")


@pytest.mark.slow
def test_a_describe_that_fails_for_a_moment_is_asked_again_not_read_as_a_lost_slice(cloud):
  cloud.scenario(describe=["ACTIVE", FLAKY, FLAKY, "ACTIVE"], status=["t1v-n-0 finished"])
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0", "--retry_wait=0")
  assert result.returncode == 0, result.stderr
  assert [kind(c) for c in cloud.calls()] == ["describe", "scp", "start", "describe", "describe", "describe", "status"]
  retries = [line for line in result.stderr.splitlines() if "trying again" in line]
  assert len(retries) == 2 and retries[0].startswith("zoo-v5e: describing the queued resource failed (ERROR: ")

  cloud.scenario(describe=[FLAKY])  # it stays down: one line, and the slice is neither deleted nor re-created
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0", "--retry_wait=0", "--retries=1")
  assert result.returncode == 1
  assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
      f"error: could not read the state of zoo-v5e after 2 tries: {FLAKY['stderr']}"]
  assert [kind(c) for c in cloud.calls()][7:] == ["describe", "describe"]


@pytest.mark.slow
def test_supervise_gives_up_on_a_job_no_ssh_reaches_after_the_stated_time(cloud):
  cloud.scenario(describe=["ACTIVE"], status=[{"rc": 255}])
  began = time.monotonic()
  result = cloud.launcher(*RUN, "--supervise", *SLICE_OPTIONS, "--poll=0.1", "--unreachable_after=0.5")
  assert result.returncode == 1 and time.monotonic() - began > 0.5
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and errors[0].startswith("error: supervise: no worker of zoo-v5e answered ssh for 0.5 s "
                                                   "while the slice is ACTIVE; gave up watching ")
  assert [kind(c) for c in cloud.calls()].count("status") >= 3  # asked again, 0.1 s apart, for over 0.5 s


@pytest.mark.parametrize("states,calls", [
    ([GONE], ["describe"]),  # already gone
    (["DELETING", "DELETING", GONE], ["describe", "describe", "describe"]),  # being deleted: wait until gone
    (["SUSPENDED"], ["describe", "delete"]),
], ids=["gone", "deleting", "suspended"])
def test_delete_is_idempotent(cloud, states, calls):
  cloud.scenario(describe=states)
  result = cloud.launcher("delete", "zoo-v5e", f"--zone={ZONE}", "--poll=0")
  assert result.returncode == 0, result.stderr
  assert [kind(c) for c in cloud.calls()] == calls


@pytest.mark.parametrize("files,expected", [
    ({}, "no such launch"),
    ({"pid": "PID", "exit_status": "0"}, "not running"),
    ({"pid": "999999999"}, "not running"),
    ({"pid": "PID"}, "stopping"),
], ids=["missing", "ended", "gone", "running"])
def test_the_stop_script_stops_a_running_job_and_is_no_error_otherwise(tmp_path, files, expected):
  run = tmp_path / "zoo_runs" / "L1"
  run.mkdir(parents=True)
  job = subprocess.Popen(["sleep", "60"], start_new_session=True)  # its own process group, as under setsid
  try:
    for name, text in files.items():
      (run / name).write_text(text.replace("PID", str(job.pid)))
    result = subprocess.run(["bash", "-c", gcloud.stop_script("L1")], env={**os.environ, "HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0 and result.stdout == f"{socket.gethostname()} {expected}\n", result.stderr
    if expected == "stopping":
      assert job.wait(timeout=10) == -15  # SIGTERM
  finally:
    job.kill()
    job.wait()


def test_logs_follow_prints_lines_as_they_are_written(tmp_path):
  run = tmp_path / "zoo_runs" / "L1"
  run.mkdir(parents=True)
  (run / "train.log").write_text("step 1\n")
  follow = subprocess.Popen(["bash", "-c", gcloud.logs_script("L1", 5, follow=True)], start_new_session=True,
                            env={**os.environ, "HOME": str(tmp_path)}, stdout=subprocess.PIPE, text=True)
  try:
    assert follow.stdout.readline() == f"{socket.gethostname()}: step 1\n"
    with open(run / "train.log", "a") as f:
      f.write("step 2\n")
    assert follow.stdout.readline() == f"{socket.gethostname()}: step 2\n"  # tail -F and sed -u: no buffering
  finally:
    os.killpg(follow.pid, 15)
    follow.wait()


@pytest.mark.parametrize("args", [
    ["create", "zoo-v5e", f"--zone={ZONE}", *SLICE_OPTIONS],
    RUN,
    pytest.param([*RUN, "--supervise", *SLICE_OPTIONS], marks=pytest.mark.slow),  # run's config check again
    ["status", "zoo-v5e", f"--zone={ZONE}"],
    ["logs", "zoo-v5e", f"--zone={ZONE}"],
    ["logs", "zoo-v5e", f"--zone={ZONE}", "--follow"],
    ["stop", "zoo-v5e", f"--zone={ZONE}"],
    ["delete", "zoo-v5e", f"--zone={ZONE}"],
], ids=["create", "run", "supervise", "status", "logs", "follow", "stop", "delete"])
def test_dry_run_prints_the_commands_and_runs_none(cloud, args):
  result = cloud.launcher(*args, "--dry_run")
  assert result.returncode == 0, result.stderr
  assert cloud.calls() == []
  printed = [shlex.split(line) for line in result.stdout.splitlines()]
  assert printed and all(argv[0] in ("gcloud", "git", "tar") for argv in printed), result.stdout
  if args[0] == "create":
    assert printed == [CREATE, DESCRIBE]
  if args[0] == "run":
    assert [argv[0] for argv in printed][:4] == ["gcloud", "git", "tar", "gcloud"]
    assert not list(cloud.directory.glob("*.tgz"))  # not even the archive was built


@pytest.mark.parametrize("args,message", [
    ([*RUN[:3], "--workdir=/tmp/run", "--config=configs/pi.py:urpe"],
     "error: run: --workdir must be on GCS (gs://BUCKET/PATH)"),
    (["create", "zoo-v5e", f"--zone={ZONE}", "--spot"], "error: create: --accelerator and --runtime are required"),
    ([*RUN, "--supervise"], "error: run --supervise: --accelerator and --runtime are required"),
    ([*RUN, "--steps=3"], "error: Unknown command line flag 'steps'"),
    ([*RUN, "--max-attempts=3"], "error: Unknown command line flag 'max-attempts'. Did you mean: max_attempts ?"),
    ([], "error: no verb; the verbs: create, run, status, logs, stop, delete, image, manifest"),
    (["start", "zoo-v5e"], "error: unknown verb 'start'; the verbs: create, run, status, logs, stop, delete, image, "
                           "manifest"),
    (["status", "zoo-v5e", f"--zone={ZONE}", "--max_attempts=3"], "error: status does not take --max_attempts (only "
                                                                   "run)"),
    (["delete", "zoo-v5e", f"--zone={ZONE}", "--launch=L1"], "error: delete does not take --launch (only status, logs, "
                                                             "stop)"),
    ([*RUN[:1], *RUN[2:]], "error: run takes the slice NAME, got none"),
    (["logs", "a", "b", f"--zone={ZONE}"], "error: logs takes the slice NAME, got a b"),
    (["image", "pull", "--image=img:1"], "error: image takes build or push, got pull"),
    (["status", "zoo-v5e", f"--zone={ZONE}", "--config.train.steps=3"],
     "error: status takes no config overrides, got --config.train.steps=3"),
    (RUN[:3], "error: run: --workdir, --config are required"),
    (["create", "zoo-v5e", f"--zone={ZONE}", *SLICE_OPTIONS, "--reserved"], "error: give at most one of --spot and "
                                                                           "--reserved"),
    (["logs", "zoo-v5e", f"--zone={ZONE}", "--lines=ten"], "error: flag --lines=ten: invalid literal for int()"),
], ids=["local_workdir", "create_without_type", "supervise_without_type", "unknown_flag", "dashed_flag", "no_verb",
        "unknown_verb", "flag_of_another_verb", "flag_of_other_verbs", "no_name", "two_names", "image_action",
        "overrides_elsewhere", "required", "spot_and_reserved", "not_an_integer"])
def test_usage_errors_exit_2_with_one_line(cloud, args, message):
  result = cloud.launcher(*args)
  assert result.returncode == 2
  assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
  assert cloud.calls() == []


def test_a_verbs_help_exits_0_and_names_the_verbs_of_each_flag(cloud):
  result = cloud.launcher("run", "zoo-v5e", "--help")
  assert result.returncode == 0 and result.stderr == "" and cloud.calls() == [], result.stderr
  assert result.stdout.startswith("Cloud TPU from this checkout")
  assert "\n  --max_attempts: launches in all before --supervise gives up [run]\n" in result.stdout
  assert "\n  --lines: lines of each worker's train.log [logs]\n" in result.stdout


MANIFEST = ["manifest", "--name=zoo-pi", "--image=europe-docker.pkg.dev/p/zoo/train:1",
            "--accelerator=tpu-v5-lite-podslice", "--topology=4x4", "--workdir=gs://my-bucket/zoo/pi",
            "--config=configs/pi.py:urpe", "--config.train.steps=2000"]
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def test_the_jobset_manifest_has_one_job_per_slice_and_what_jax_needs(cloud):
  result = cloud.launcher(*MANIFEST, "--slices=2")
  assert result.returncode == 0, result.stderr
  manifest = yaml.safe_load(result.stdout)
  assert manifest["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and manifest["kind"] == "JobSet"
  assert manifest["metadata"]["annotations"]["alpha.jobset.sigs.k8s.io/exclusive-topology"] == \
      "cloud.google.com/gke-nodepool"
  [replicated] = manifest["spec"]["replicatedJobs"]
  assert replicated["replicas"] == 2  # one Job per slice
  job = replicated["template"]["spec"]
  assert job["parallelism"] == job["completions"] == 4  # a 4x4 v5e slice: 16 chips on 4 VMs of 4
  pod = job["template"]["spec"]
  assert pod["nodeSelector"] == {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                                 "cloud.google.com/gke-tpu-topology": "4x4"}
  [container] = pod["containers"]
  assert container["resources"]["limits"] == {"google.com/tpu": 4}
  assert container["command"] == ["python", "-m", "launch.train", "--distributed", "--workdir=gs://my-bucket/zoo/pi",
                                  "--config=configs/pi.py:urpe", "--config.mesh.slices=2", "--config.train.steps=2000"]
  env = {e["name"]: e for e in container["env"]}
  assert env["MEGASCALE_COORDINATOR_ADDRESS"]["value"] == "zoo-pi-slice-0-0.zoo-pi"  # pod 0 of slice 0
  assert env["MEGASCALE_NUM_SLICES"]["value"] == "2"
  assert env["MEGASCALE_SLICE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
      "metadata.annotations['jobset.sigs.k8s.io/job-index']"
  # Names Kubernetes validates as DNS-1123 labels, including the longest pod host name the JobSet will create.
  for name in (manifest["metadata"]["name"], replicated["name"], container["name"], "zoo-pi-slice-1-3"):
    assert DNS_1123_LABEL.match(name), name
  assert all(isinstance(e["name"], str) and re.match(r"^[A-Z_][A-Z0-9_]*$", e["name"]) for e in container["env"])


def test_one_slice_needs_no_megascale_variables(cloud):
  manifest = yaml.safe_load(cloud.launcher(*MANIFEST).stdout)
  container = manifest["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]
  assert manifest["spec"]["replicatedJobs"][0]["replicas"] == 1
  assert not [e for e in container["env"] if e["name"].startswith("MEGASCALE")]


@pytest.mark.parametrize("override,message", [
    ("--name=Zoo_PI", "error: manifest: name 'Zoo_PI' is not a valid Kubernetes name"),
    ("--name=" + "z" * 41, "is not a valid Kubernetes name"),
    ("--accelerator=v5e", "error: manifest: unknown accelerator 'v5e'; valid choices: tpu-v4-podslice, "
                          "tpu-v5-lite-podslice, tpu-v5p-slice, tpu-v6e-slice"),
    ("--workdir=/tmp/x", "error: manifest: --workdir must be on GCS (gs://BUCKET/PATH)"),
    ("--ttl=-1", "error: manifest: ttl must be >= 0 seconds, got -1"),
    ("--queue=Team A", "error: manifest: queue 'Team A' is not a valid Kubernetes name"),
])
def test_bad_manifest_options_exit_2(cloud, override, message):
  result = cloud.launcher(*MANIFEST, override)
  assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_manifest_apply_runs_kubectl_and_dry_run_does_not(cloud):
  out = cloud.directory / "jobset.yaml"
  dry = cloud.launcher(*MANIFEST, f"--out={out}", "--apply", "--dry_run")
  assert dry.stdout == f"kubectl apply -f {out}\n" and cloud.calls() == []
  assert cloud.launcher(*MANIFEST, f"--out={out}", "--apply").returncode == 0
  assert cloud.calls() == [["kubectl", "apply", "-f", str(out)]]
  assert yaml.safe_load(out.read_text())["kind"] == "JobSet"


@pytest.mark.parametrize("files,expected", [
    ({}, "missing"),
    ({"pid": "999999999"}, "lost"),  # no such process, no exit status
    ({"pid": "PID"}, "running"),
    ({"pid": "1", "exit_status": "3", "train.log": ""}, "failed 3"),
    ({"pid": "1", "exit_status": "0", "train.log": "...\nsummary: {}\n"}, "finished"),
    ({"pid": "1", "exit_status": "143", "train.log": "...\npreempted: SIGTERM received; ...\n"}, "stopped"),
    ({"pid": "1", "exit_status": "143", "train.log": "...\n"}, "killed 143"),  # another worker's SIGTERM stop
    ({"pid": "1", "exit_status": "137", "train.log": "...\n"}, "killed 137"),
    ({"pid": "1", "exit_status": "0", "train.log": "...\n"}, "exited"),
])
def test_the_worker_status_script_reads_a_launch_directory(tmp_path, files, expected):
  run = tmp_path / "zoo_runs" / "L1"
  run.mkdir(parents=True)
  for name, text in files.items():
    (run / name).write_text(text.replace("PID", str(os.getpid())))
  result = subprocess.run(["bash", "-c", gcloud.status_script("L1")], env={**os.environ, "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=10)
  assert result.stdout.split(" ", 1)[1] == expected + "\n", result.stderr


def docs_launcher_commands() -> list[list[str]]:
  """The `python -m launch.tpu ...` commands of docs/tpu.md, continuation lines joined."""
  lines = (REPO / "docs" / "tpu.md").read_text().replace("\\\n", " ").splitlines()
  return [shlex.split(line)[3:] for line in lines if line.startswith("python -m launch.tpu ")]


def test_the_docs_commands_run_in_dry_run(cloud):
  commands = docs_launcher_commands()
  assert [c[0] for c in commands] == ["create", "run", "status", "logs", "stop", "run", "delete", "image", "image",
                                      "manifest"]
  for command in commands:
    result = cloud.launcher(*command, "--dry_run")
    assert result.returncode == 0, (command, result.stderr)
    assert result.stdout.startswith(("gcloud ", "docker ", "kubectl ")), (command, result.stdout)
  assert cloud.calls() == [] and not (REPO / "jobset.yaml").exists()


# Hostile strings: each would run `touch MARKER` (or pass an option to ssh) if a shell or a parser read it as code.
def hostile(marker) -> list[str]:
  return [f"gs://my-bucket/x; touch {marker} #", f"$(touch {marker})", f"`touch {marker}`", f"x'; touch {marker}; '",
          "a b", f"x\ntouch {marker}", f"-oProxyCommand=touch {marker}"]


def replace(argv: list[str], option: str, value: str) -> list[str]:
  """`argv` with `option`'s value (a `--name=` prefix, or "NAME" for the slice name) replaced by `value`."""
  if option == "NAME":
    return [argv[0], value, *argv[2:]]
  return [a for a in argv if not a.startswith(option)] + [option + value]


SLICE_VERBS = {"create": ["create", "zoo-v5e", f"--zone={ZONE}", *SLICE_OPTIONS], "run": RUN,
               "supervise": [*RUN, "--supervise", *SLICE_OPTIONS], "status": ["status", "zoo-v5e", f"--zone={ZONE}"],
               "logs": ["logs", "zoo-v5e", f"--zone={ZONE}"], "stop": ["stop", "zoo-v5e", f"--zone={ZONE}"],
               "delete": ["delete", "zoo-v5e", f"--zone={ZONE}"]}
# The values every hostile string must be refused in: those that gcloud reads as names and options, launch ids (a
# directory on the workers), and anything holding a newline.
REFUSED = [(verb, option) for verb in SLICE_VERBS for option in ("NAME", "--zone=", "--project=")]
REFUSED += [(verb, "--launch=") for verb in ("status", "logs", "stop")]
REFUSED += [(verb, option) for verb in ("create", "supervise") for option in ("--accelerator=", "--runtime=")]
REFUSED += [("manifest", option) for option in ("--name=", "--topology=")]


@pytest.mark.parametrize("verb,option", REFUSED, ids=[f"{verb}-{option.strip('-=')}" for verb, option in REFUSED])
def test_hostile_names_zones_and_launch_ids_are_refused_with_one_line(tmp_path, capsys, monkeypatch, verb, option):
  from launch.tpu.__main__ import main  # noqa: PLC0415 — the real command line, in this process: no gcloud runs

  monkeypatch.setenv("PATH", str(FakeCloud(tmp_path).bin) + os.pathsep + os.environ["PATH"])
  monkeypatch.setenv("FAKE_CLOUD_DIR", str(tmp_path))
  marker = tmp_path / "MARKER"
  for value in hostile(marker):
    with pytest.raises(SystemExit) as exit_:
      main(replace(MANIFEST if verb == "manifest" else SLICE_VERBS[verb], option, value) + ["--dry_run"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == "", (value, out)
    assert err.startswith("error: ") and err.count("\n") == 1, (value, err)
  assert not marker.exists() and not (tmp_path / "calls.jsonl").exists()


@pytest.mark.parametrize("verb", ["run", "supervise", "manifest"])
def test_workdirs_configs_and_overrides_with_a_newline_or_a_bad_bucket_are_refused(tmp_path, capsys, monkeypatch,
                                                                                     verb):
  from launch.tpu.__main__ import main  # noqa: PLC0415 — refused before the config is read (which defines a flag)

  monkeypatch.setenv("PATH", str(FakeCloud(tmp_path).bin) + os.pathsep + os.environ["PATH"])
  monkeypatch.setenv("FAKE_CLOUD_DIR", str(tmp_path))  # its configured project

  marker = tmp_path / "MARKER"
  argv = MANIFEST if verb == "manifest" else SLICE_VERBS[verb]
  cases = [("--workdir=", value) for value in hostile(marker)[1:]]  # not on GCS
  cases += [("--workdir=", f"gs://my-bucket/x\ntouch {marker}"), ("--workdir=", f"gs://b;touch {marker}/x"),
            ("--workdir=", "gs://-bucket/x"), ("--config.train.data_dir=", f"x\ntouch {marker}"),
            ("--config=", f"configs/pi.py:urpe\ntouch {marker}")]
  for option, value in cases:
    with pytest.raises(SystemExit) as exit_:
      main(replace(argv, option, value) + ["--dry_run"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1, (value, err)
  assert not marker.exists()


WORKER_STUB = """#!{python}
# A stand-in on a fake TPU worker (Ubuntu 22.04: python3 and its pip are 3.10): records its argv, then acts as below.
import json, os, shutil, sys
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["WORKER_CALLS"], "a") as f:
  f.write(json.dumps([name, *args]) + "\\n")
too_old = "ERROR: Package 'zoo' requires a different Python: 3.10.12 not in '>=3.11'"
if name in ("pip", "pip3") or (name == "python3" and args[:2] != ["-m", "pip"]):
  sys.exit(too_old)  # the image's Python cannot run or install zoo
if name == "python3":  # python3 -m pip install --user --require-hashes -r launch/tpu/requirements-uv.txt: uv only
  if "--hash=" not in open(args[-1]).read():
    sys.exit("no hashes")
  os.makedirs(os.path.expanduser("~/.local/bin"), exist_ok=True)
  shutil.copy(sys.argv[0], os.path.expanduser("~/.local/bin/uv"))
if name == "uv" and args[0] == "venv":  # the venv's python: the >= 3.11 interpreter uv installed
  os.makedirs(".venv/bin")
  shutil.copy(sys.argv[0], ".venv/bin/python")
if name == "uv" and args[0] == "pip" and "-r" in args and "--hash=" not in open(args[args.index("-r") + 1]).read():
  sys.exit("no hashes")
if name == "sudo" and args[0] == "lsof":  # the process that holds the TPU, if the test made one
  print(os.environ.get("STALE_PID", ""))
if name == "sudo" and args[0] == "kill":  # really (sudo rm of libtpu's lock file is only recorded: /tmp is shared)
  os.execv("/usr/bin/kill", ["kill", *args[1:]])
if name == "python" and os.environ.get("WORKER_ENV"):  # what a trainer was started with, for multislice
  with open(os.environ["WORKER_ENV"], "w") as f:
    json.dump({{k: v for k, v in os.environ.items() if k.startswith("MEGASCALE_")}}, f)
if name == "python" and os.environ.get("WORKER_PYTHON"):
  os.execv(os.environ["WORKER_PYTHON"], [os.environ["WORKER_PYTHON"], *args])
"""


class FakeWorker:
  """A TPU worker's shell on this machine: bash with its own $HOME, and recording stubs in place of the programs
  that would reach the network or install anything (gcloud, python3 and pip of the image, uv; tar too unless
  `real_tar`); the rest (mkdir, rm, ln, nohup, setsid, kill) is real. With `python` the venv's python runs it."""

  def __init__(self, directory, real_tar: bool = False, python: str = ""):
    self.home, stubs, self.log = directory / "worker_home", directory / "stubs", directory / "worker_calls.jsonl"
    self.home.mkdir(exist_ok=True)
    stubs.mkdir()
    for program in ("gcloud", "python3", "pip", "pip3", "sudo", *(() if real_tar else ("tar",))):
      (stubs / program).write_text(WORKER_STUB.format(python=sys.executable))
      (stubs / program).chmod(0o755)
    self.env = {"HOME": str(self.home), "PATH": f"{stubs}:/usr/bin:/bin", "WORKER_CALLS": str(self.log),
                "WORKER_PYTHON": python, "JAX_PLATFORMS": "cpu"}

  def run(self, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=self.home, env=self.env, capture_output=True, text=True,
                          timeout=30)

  def calls(self) -> list[list[str]]:
    return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

  def wait_for(self, program: str, seconds: float = 20) -> None:
    """Until the detached job has called `program` (it runs in the background of the start script)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
      if any(call[0] == program for call in self.calls()):
        return
      time.sleep(0.1)
    raise AssertionError(f"{program} was never called: {self.calls()}")


@pytest.mark.slow  # installs Python and the locked packages on a fake worker, then trains there: a long journey
def test_a_worker_whose_python3_is_3_10_trains_under_the_pinned_3_11(cloud, data_dir):
  """`run` against the fake cloud, whose scp puts the archive in a fake worker's home; the start script then runs
  there: the image's python3 / pip (3.10) only install uv, uv installs Python 3.11 and the locked packages, and the
  venv's interpreter trains the smoke config from the unpacked archive. Two changes to the recorded script: the
  bucket is a local directory, and no --distributed (one CPU host: no TPU cluster to detect)."""
  cloud.scenario(describe=["ACTIVE"])
  result = cloud.launcher("run", "zoo-v5e", f"--zone={ZONE}", "--workdir=gs://my-bucket/zoo/pi",
                          "--config=configs/pi.py:urpe,smoke", f"--config.train.data_dir={data_dir}")
  assert result.returncode == 0, result.stderr
  [start] = [c for c in cloud.calls() if kind(c) == "start"]
  [launch_id] = launch_ids([start])
  worker = FakeWorker(cloud.directory, real_tar=True, python=sys.executable)
  workdir = cloud.directory / "bucket" / "zoo" / "pi"
  script = start[-1].removeprefix("--command=").replace("--distributed ", "")
  started = worker.run(script.replace("gs://my-bucket/zoo/pi", str(workdir)))
  assert started.returncode == 0, started.stderr
  worker.wait_for("gcloud", seconds=240)  # the log copy, once training has ended
  run_dir = worker.home / "zoo_runs" / launch_id
  assert (run_dir / "exit_status").read_text() == "0\n", (run_dir / "train.log").read_text()[-3000:]
  assert "summary:" in (run_dir / "train.log").read_text()
  assert (workdir / "config.json").exists() and (workdir / "checkpoints" / "6").is_dir()
  calls = [c for c in worker.calls() if c[0] != "gcloud"]
  assert calls == [
      ["python3", "-m", "pip", "install", "-q", "--user", "--require-hashes", "-r", "launch/tpu/requirements-uv.txt"],
      ["uv", "python", "install", "-q", gcloud.PYTHON],
      ["uv", "venv", "-q", "--python", gcloud.PYTHON, ".venv"],
      ["uv", "pip", "install", "-q", "--python", ".venv/bin/python", "--require-hashes", "-r",
       "launch/tpu/requirements-tpu.txt"],
      ["uv", "pip", "install", "-q", "--python", ".venv/bin/python", "--no-deps", "-e", "."],
      ["sudo", "lsof", "-t", "/dev/accel*", "/dev/vfio/*"], ["sudo", "rm", "-f", "/tmp/libtpu_lockfile"],  # no TPU here
      ["python", "-m", "launch.train", f"--workdir={workdir}", "--config=configs/pi.py:urpe,smoke",
       f"--config.train.data_dir={data_dir}"]]
  assert gcloud.PYTHON.startswith("3.11.")
  shipped = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True).stdout.split()
  unpacked = [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()]
  made_there = (".venv/", "train.log", "pid", "exit_status")
  assert {p for p in unpacked if not p.startswith(made_there) and "__pycache__" not in p} == \
      {p for p in shipped if (REPO / p).exists()}  # only the checkout's tracked and unignored files


def test_the_start_script_kills_a_stale_tpu_holder_and_removes_libtpus_lock_before_training(cloud):
  result = cloud.launcher(*RUN, "--dry_run")
  assert result.returncode == 0, result.stderr
  printed = [shlex.split(line) for line in result.stdout.splitlines()]
  launch_id = printed[3][6].removeprefix("zoo-v5e:zoo-").removesuffix(".tgz")
  worker = FakeWorker(cloud.directory, real_tar=True)
  subprocess.run(["tar", "-C", REPO, "-czf", worker.home / f"zoo-{launch_id}.tgz", gcloud.UV_LOCK, gcloud.TPU_LOCK],
                 check=True)
  stale = subprocess.Popen(["sleep", "60"], start_new_session=True)  # an earlier trainer that still holds the TPU
  threading.Thread(target=stale.wait, daemon=True).start()  # reaped once killed, as init would
  try:
    worker.env["STALE_PID"] = str(stale.pid)
    started = worker.run(printed[4][-1].removeprefix("--command="))
    assert started.returncode == 0, started.stderr
    assert f"{socket.gethostname()}: killing {stale.pid}, which holds the TPU" in started.stdout
    worker.wait_for("python")
    assert stale.wait(timeout=10) == -9
    calls = [c for c in worker.calls() if c[0] in ("sudo", "python")]
    assert [c[:2] for c in calls] == [["sudo", "lsof"], ["sudo", "kill"], ["sudo", "rm"], ["python", "-m"]]
    assert calls[1] == ["sudo", "kill", "-9", str(stale.pid)] and calls[2] == ["sudo", "rm", "-f", gcloud.LIBTPU_LOCK]
  finally:
    stale.kill()


@pytest.mark.parametrize("verb", ["run", pytest.param("supervise", marks=pytest.mark.slow)])
def test_hostile_workdirs_and_overrides_reach_the_worker_as_single_words(cloud, verb):
  """The start script of `run --dry_run`, executed on a fake worker: each value reaches launch.train and the log
  copy as exactly one argument, and nothing in them runs."""
  marker = cloud.directory / "MARKER"
  workdir = f"gs://my-bucket/a b/x; touch {marker} #"
  overrides = [f"--config.train.data_dir=$(touch {marker})", f"--config.train.log_dir=`touch {marker}`",
               f"--config.train.trainable=x'; touch {marker}; '"]
  args = [*replace(SLICE_VERBS[verb], "--workdir=", workdir), *overrides, "--dry_run"]
  result = cloud.launcher(*args)
  assert result.returncode == 0, result.stderr
  printed = [shlex.split(line) for line in result.stdout.splitlines()]
  assert [argv[0] for argv in printed][:5] == ["gcloud", "git", "tar", "gcloud", "gcloud"] and cloud.calls() == []
  launch_id = printed[3][6].removeprefix("zoo-v5e:zoo-").removesuffix(".tgz")
  scripts = [argv[-1].removeprefix("--command=") for argv in printed if argv[3:5] == ["tpu-vm", "ssh"]]
  worker = FakeWorker(cloud.directory, real_tar=True)
  subprocess.run(["tar", "-C", REPO, "-czf", worker.home / f"zoo-{launch_id}.tgz", gcloud.UV_LOCK, gcloud.TPU_LOCK],
                 check=True)  # what scp put there: as much of the checkout as the setup reads
  started = worker.run(scripts[0])
  assert started.returncode == 0, started.stderr
  worker.wait_for("gcloud")
  run_dir = f"{worker.home}/zoo_runs/{launch_id}"
  calls = worker.calls()
  assert ["python", "-m", "launch.train", "--distributed", f"--workdir={workdir}", "--config=configs/pi.py:urpe",
          "--config.train.steps=2000", *overrides] in calls
  assert calls[-1] == ["gcloud", "storage", "cp", f"{run_dir}/train.log",
                       f"{workdir}/logs/{launch_id}/{socket.gethostname()}/"]
  if verb == "supervise":  # it polled the job with the status script
    assert worker.run(scripts[1]).stdout == f"{socket.gethostname()} exited\n"
  assert not marker.exists()


def test_multislice_on_tpu_vms_queues_n_nodes_and_starts_each_slice_with_its_megascale_settings(cloud):
  """`--slices=2`: one queued resource of two nodes; worker 0 of zoo-v5e-0 coordinates (its internal IP from gcloud);
  each node's start script, executed on a fake worker, hands the trainer its slice's MEGASCALE settings."""
  dry = cloud.launcher("create", "zoo-v5e", f"--zone={ZONE}", *SLICE_OPTIONS, "--slices=2", "--dry_run")
  assert dry.returncode == 0 and shlex.split(dry.stdout.splitlines()[0]) == [
      *CREATE[:6], "--node-count=2", "--node-prefix=zoo-v5e", *CREATE[7:]]
  rules = [{"match": "queued-resources describe", "outputs": ["ACTIVE"]},
           {"match": "tpu-vm describe", "outputs": ["10.164.0.7"]}]
  (cloud.directory / "scenario.json").write_text(json.dumps(rules))
  result = cloud.launcher(*RUN, "--slices=2")
  assert result.returncode == 0, result.stderr
  calls = cloud.calls()
  assert [kind(c) for c in calls] == ["describe", "address", "scp", "start", "scp", "start"]
  assert calls[1] == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "zoo-v5e-0", *WHERE,
                      "--format=value(networkEndpoints[0].ipAddress)"]
  assert [calls[2][6].split(":")[0], calls[4][6].split(":")[0], calls[3][5], calls[5][5]] == [
      "zoo-v5e-0", "zoo-v5e-1", "zoo-v5e-0", "zoo-v5e-1"]
  [launch_id, _] = launch_ids(calls)
  for slice_id, start in enumerate((calls[3], calls[5])):
    (cloud.directory / f"slice{slice_id}").mkdir()
    worker = FakeWorker(cloud.directory / f"slice{slice_id}", real_tar=True)
    worker.env["WORKER_ENV"] = str(cloud.directory / f"env{slice_id}.json")
    subprocess.run(["tar", "-C", REPO, "-czf", worker.home / f"zoo-{launch_id}.tgz", gcloud.UV_LOCK, gcloud.TPU_LOCK],
                   check=True)
    assert worker.run(start[-1].removeprefix("--command=")).returncode == 0
    worker.wait_for("gcloud")
    assert json.loads((cloud.directory / f"env{slice_id}.json").read_text()) == {
        "MEGASCALE_COORDINATOR_ADDRESS": "10.164.0.7:8081", "MEGASCALE_NUM_SLICES": "2",
        "MEGASCALE_SLICE_ID": str(slice_id), "MEGASCALE_PORT": "8081"}
    trainer = next(c for c in worker.calls() if c[0] == "python")
    assert trainer[3:6] == ["--distributed", "--workdir=gs://my-bucket/zoo/pi", "--config=configs/pi.py:urpe"]
    assert trainer[6:] == ["--config.mesh.slices=2", "--config.train.steps=2000"]  # the mesh's DCN axis

  for verb in ("status", "logs", "stop"):  # every node's workers
    dry = cloud.launcher(verb, "zoo-v5e", f"--zone={ZONE}", "--slices=2", "--dry_run")
    nodes = [argv[5] for argv in map(shlex.split, dry.stdout.splitlines()) if argv[3:5] == ["tpu-vm", "ssh"]]
    assert dry.returncode == 0 and nodes == ["zoo-v5e-0", "zoo-v5e-1"], dry.stdout


def test_hostile_values_stay_single_arguments_in_the_jobset(cloud):
  """The JobSet's container command is an argv (no shell reads it): each value is one element, the image intact."""
  marker = cloud.directory / "MARKER"
  workdir, image = f"gs://my-bucket/a b/x; touch {marker} #", f"img:1; touch {marker}"
  overrides = [f"--config.train.data_dir=$(touch {marker})", f"--config.train.trainable=x'; touch {marker}; '"]
  result = cloud.launcher(*replace(replace(MANIFEST, "--workdir=", workdir), "--image=", image), *overrides,
                          "--dry_run")
  assert result.returncode == 0, result.stderr
  [container] = yaml.safe_load(result.stdout)["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
      "containers"]
  assert container["image"] == image
  assert container["command"] == ["python", "-m", "launch.train", "--distributed", f"--workdir={workdir}",
                                  "--config=configs/pi.py:urpe", "--config.mesh.slices=1", "--config.train.steps=2000",
                                  *overrides]
  assert not marker.exists() and cloud.calls() == []


@pytest.mark.parametrize("verb,change,message", [
    ("run", ["--config.train.stepz=3"], "error: unknown config key 'stepz' (did you mean 'steps'?)"),
    pytest.param("run", ["--config=configs/nope.py"],
                 "error: Configuration is not available because of an earlier failure", marks=pytest.mark.slow),
    pytest.param("supervise", ["--config.model.positional.name=nope"],
                 "error: unknown positional encoding 'nope'; valid choices: ", marks=pytest.mark.slow),
    ("run", ["--config=configs/pi.py:urpe; touch MARKER"], "error: unknown positional encoding 'urpe; touch MARKER'"),
    pytest.param("manifest", ["--config.train.batch_size=0"], "error: train: batch_size must be >= 1, got 0",
                 marks=pytest.mark.slow),
], ids=["unknown_key", "no_such_file", "invalid_choice", "hostile_arg", "manifest"])
def test_the_config_is_checked_locally_before_any_cloud_call(cloud, verb, change, message):
  argv = MANIFEST if verb == "manifest" else SLICE_VERBS[verb]
  if change[0].startswith("--config="):
    argv = replace(argv, "--config=", change[0].removeprefix("--config="))
  else:
    argv = [*argv, *change]
  result = cloud.launcher(*argv, "--dry_run")
  assert result.returncode == 2 and result.stdout == "", result.stdout  # not even the describe
  assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
  assert cloud.calls() == [] and not (REPO / "MARKER").exists()


IMAGE = "europe-docker.pkg.dev/p/zoo/train:1"


def test_image_build_and_push_run_docker_on_the_checkout_with_the_workers_python(cloud):
  build = ["docker", "build", f"--file={REPO}/launch/tpu/Dockerfile", f"--build-arg=PYTHON={gcloud.PYTHON}",
           f"--tag={IMAGE}", str(REPO)]
  dry = [cloud.launcher("image", action, f"--image={IMAGE}", "--dry_run") for action in ("build", "push")]
  assert [r.stdout for r in dry] == [shlex.join(build) + "\n", f"docker push {IMAGE}\n"] and cloud.calls() == []
  for action in ("build", "push"):
    assert cloud.launcher("image", action, f"--image={IMAGE}").returncode == 0
  assert cloud.calls() == [build, ["docker", "push", IMAGE]]
  for bad in [*hostile(cloud.directory / "MARKER"), "Europe/Train:1", "--output=/tmp/x"]:
    result = cloud.launcher("image", "build", f"--image={bad}", "--dry_run")
    assert result.returncode == 2 and result.stdout == "" and result.stderr.startswith("error: --image "), bad
    assert result.stderr.count("\n") == 1, result.stderr
  assert len(cloud.calls()) == 2 and not (cloud.directory / "MARKER").exists()


def test_the_image_installs_the_lock_and_runs_where_the_manifest_says():
  """The Dockerfile's instructions: the workers' Python, the hash-checked lock, the checkout at the manifest's
  workingDir with zoo installed; the build context leaves out what .gitignore leaves out."""
  from launch.tpu import manifest  # noqa: PLC0415

  lines = [line for line in (REPO / "launch/tpu/Dockerfile").read_text().splitlines() if not line.startswith("#")]
  steps = [line.split(" ", 1) for line in lines if line]
  assert steps == [
      ["ARG", "PYTHON"], ["FROM", "python:${PYTHON}-slim-bookworm"], ["WORKDIR", manifest.WORKING_DIR],
      ["COPY", f"{gcloud.TPU_LOCK} {gcloud.TPU_LOCK}"],
      ["RUN", f"pip install --no-cache-dir --require-hashes -r {gcloud.TPU_LOCK}"], ["COPY", ". ."],
      ["RUN", "pip install --no-cache-dir --no-deps -e ."], ["ENV", f"PYTHONPATH={manifest.WORKING_DIR}"]]
  ignored = (REPO / "launch/tpu/Dockerfile.dockerignore").read_text().splitlines()
  for pattern in (REPO / ".gitignore").read_text().split():
    assert pattern.strip("/").rstrip("/") in {line.removeprefix("**/") for line in ignored}, pattern
