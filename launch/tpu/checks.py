"""What the launcher accepts from the user, checked on this machine before any cloud call.

A mistake found on a billed slice costs a pack, a copy and an install first, and a string that reaches a shell or
gcloud's own argument parser must be what it claims to be: each check raises ValueError with a one-line message
(`launch.tpu` turns it into `error: ...`, exit status 2). Values that only travel as quoted words (workdir paths,
config overrides) keep any printable character; control characters (a newline) are refused everywhere, as GCS
refuses them in object names.
"""

from __future__ import annotations

import re

from launch.cli import define_config_flag, fail, load_config, parse_flags
from zoo.config import check

# Cloud TPU node (and queued resource) names: a lowercase letter first, then lowercase letters, digits and '-', not
# ending in '-'; at most 63 characters (Compute Engine's resource names).
SLICE_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
# A project id, optionally domain-scoped (example.com:my-project).
PROJECT = re.compile(r"(?:[a-z0-9][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9]")
# Accelerator types (v5litepod-16) and runtime versions (v2-alpha-tpuv5-lite, tpu-ubuntu2204-base).
GCLOUD_VALUE = re.compile(r"[a-z0-9][-a-z0-9._]*")
# Launch ids name a directory on the workers: no '/', no leading '-' or '.' (not an option, not '..').
LAUNCH_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# GCS bucket names: lowercase letters, digits, '-', '_' and '.', a letter or digit at both ends, 3-63 characters
# (up to 222 with dots, each dot-separated part at most 63).
BUCKET = re.compile(r"[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]")
IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Container image references: [registry[:port]/]path[:tag][@sha256:digest], lowercase path components.
IMAGE = re.compile(r"[a-z0-9][-a-z0-9._]*(?::[0-9]+)?(?:/[a-z0-9][-a-z0-9._]*)*(?::[A-Za-z0-9_][-A-Za-z0-9_.]{0,127})?"
                   r"(?:@sha256:[0-9a-f]{64})?")


def printable(value: str, what: str) -> None:
  check(CONTROL.search(value) is None, f"{what}: control characters (a newline, a tab) are not allowed, got {value!r}")


def matches(pattern: re.Pattern, value: str, what: str, rule: str) -> None:
  check(pattern.fullmatch(value) is not None, f"{what} {value!r} is not valid: {rule}")


def slice_location(name: str, zone: str, project: str) -> None:
  matches(SLICE_NAME, name, "slice name", "a lowercase letter, then lowercase letters, digits and '-', not ending in "
                                          "'-', at most 63 characters")
  matches(ZONE, zone, "--zone", "a Cloud zone such as europe-west4-b")
  if project:
    matches(PROJECT, project, "--project", "a project id: 6-30 lowercase letters, digits and '-', a letter first")


def slice_count(slices: int) -> None:
  check(slices >= 1, f"--slices must be >= 1, got {slices}")


def coordinator_ip(value: str) -> None:
  """What gcloud printed as worker 0's internal address: it travels into every worker's environment."""
  matches(IPV4, value, "the coordinator's address", "an IPv4 address (gcloud describe printed something else)")


def gcloud_value(value: str, what: str) -> None:
  matches(GCLOUD_VALUE, value, what, "lowercase letters, digits, '-', '.' and '_'")


def image(value: str) -> None:
  matches(IMAGE, value, "--image", "a container image such as europe-docker.pkg.dev/PROJECT/REPO/train:TAG")


def launch_id(value: str) -> None:
  """"" (the latest launch) or a launch id as `run` prints it."""
  if value:
    matches(LAUNCH_ID, value, "--launch", "letters, digits, '.', '_' and '-', not starting with '-' or '.'")


def gcs_workdir(workdir: str, what: str) -> None:
  """gs://BUCKET[/PATH]: every worker and every re-created slice must find the same checkpoints, which a local path
  on one machine is not."""
  check(workdir.startswith("gs://"), f"{what} must be on GCS (gs://BUCKET/PATH), where every worker and every "
                                     f"re-created slice finds the same checkpoints; got {workdir!r}")
  bucket = workdir.removeprefix("gs://").split("/", 1)[0]
  valid = (BUCKET.fullmatch(bucket) is not None and len(bucket) <= (222 if "." in bucket else 63)
           and all(len(part) <= 63 for part in bucket.split(".")))
  check(valid, f"{what}: {bucket!r} is not a valid GCS bucket name: 3-63 lowercase letters, digits, '-', '_' and "
               f"'.', a letter or digit at both ends")
  printable(workdir, what)


def config_args(config: str, overrides: list[str]) -> None:
  """--config and its overrides travel to the workers as quoted words; what they mean is checked by `experiment`."""
  printable(config, "--config")
  for value in overrides:
    printable(value, "config override")


def experiment(train_args: list[str]) -> None:
  """The config that `launch.train` builds from its `--config` / `--config.*` arguments among `train_args`, checked
  as it checks it: loaded with the overrides (an unknown key fails), then read into the option dataclasses (invalid
  choices, sizes that do not divide). The first problem exits 2 with one line (`launch.cli.fail`). Defines the
  `--config` flag in absl's flags: call it once per process."""
  argv = ["launch.train", *(a for a in train_args if a.startswith(("--config=", "--config.")))]
  holder = define_config_flag("experiment config: configs/<name>.py[:arg]", argv)
  parse_flags(argv)
  config = load_config(holder)
  from zoo.train.options import parse_experiment  # noqa: PLC0415 — imports JAX: only `run` and `manifest` pay it

  try:
    parse_experiment(config)
  except ValueError as e:
    fail(str(e))
