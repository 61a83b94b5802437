"""The training image for GKE: `docker build` of launch/tpu/Dockerfile with the TPU workers' Python, and `docker push`.

Pure functions returning argv lists, like gcloud.py: `--dry_run` prints them, the tests compare them. The image name
is checked (`checks.image`) before it reaches docker's command line, where a value starting with '-' is an option.
"""

from __future__ import annotations

import os

from launch.tpu import gcloud

DOCKERFILE = os.path.join("launch", "tpu", "Dockerfile")


def build(repo: str, image: str) -> list[str]:
  """Builds from the checkout `repo` (less what Dockerfile.dockerignore names), on the Python the workers run."""
  return ["docker", "build", f"--file={os.path.join(repo, DOCKERFILE)}", f"--build-arg=PYTHON={gcloud.PYTHON}",
          f"--tag={image}", repo]


def push(image: str) -> list[str]:
  return ["docker", "push", image]
