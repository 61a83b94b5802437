"""The GKE JobSet of `python -m launch.tpu manifest` against the JobSet v1alpha2 CRD's own schema (vendored in
fixtures/jobset/), validated strictly as `kubectl apply --validate=strict` does: an unknown field anywhere is an
error. And what the schema cannot say: restarts only on infrastructure failures, the coordinator, the working
directory of the image, the TTL and the Kueue queue."""

import json
import subprocess
import sys

import jsonschema
import pytest
import yaml
from conftest import FIXTURES, REPO

SCHEMA = json.loads((FIXTURES / "jobset" / "jobset-v1alpha2.schema.json").read_text())
MANIFEST = ["manifest", "--name=zoo-pi", "--image=europe-docker.pkg.dev/p/zoo/train:1",
            "--accelerator=tpu-v5-lite-podslice", "--topology=4x4", "--workdir=gs://my-bucket/zoo/pi",
            "--config=configs/pi.py:urpe", "--config.train.steps=2000"]


def strict(schema):
  """The structural schema with unknown fields refused: `additionalProperties: false` on every object that lists
  its properties, except where Kubernetes keeps unknown fields (`x-kubernetes-preserve-unknown-fields`)."""
  if isinstance(schema, list):
    return [strict(s) for s in schema]
  if not isinstance(schema, dict):
    return schema
  out = {k: strict(v) for k, v in schema.items()}
  if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
    out["additionalProperties"] = False
  return out


VALIDATOR = jsonschema.Draft7Validator(strict(SCHEMA))


def manifest(*extra) -> dict:
  result = subprocess.run([sys.executable, "-m", "launch.tpu", *MANIFEST, *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  return yaml.safe_load(result.stdout)


def errors(document: dict) -> list[str]:
  return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(document)]


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
  return {"one_slice": manifest(), "two_slices": manifest("--slices=2", "--queue=team-a", "--ttl=3600")}


@pytest.mark.parametrize("which", ["one_slice", "two_slices"])
def test_the_manifest_validates_strictly_against_the_jobset_crd(manifests, which):
  assert errors(manifests[which]) == []


def test_strict_validation_catches_a_misspelt_or_misplaced_field(manifests):
  document = json.loads(json.dumps(manifests["one_slice"]))
  document["spec"]["failurePolicy"]["maxRestart"] = 3
  job = document["spec"]["replicatedJobs"][0]["template"]["spec"]
  job["template"]["spec"]["podFailurePolicy"] = job["podFailurePolicy"]  # a Job field on the pod
  assert sorted(errors(document)) == [
      "spec/failurePolicy: Additional properties are not allowed ('maxRestart' was unexpected)",
      "spec/replicatedJobs/0/template/spec/template/spec: Additional properties are not allowed ('podFailurePolicy' "
      "was unexpected)"]


@pytest.mark.parametrize("which", ["one_slice", "two_slices"])
def test_only_infrastructure_failures_restart_the_jobset(manifests, which):
  spec = manifests[which]["spec"]
  job = spec["replicatedJobs"][0]["template"]["spec"]
  # Exit 1 (non-finite loss, crash) and 2 (bad config) fail the Job at once; a kill signal or a lost node fails it
  # through backoffLimit 0, which the JobSet restarts.
  assert job["backoffLimit"] == 0
  assert job["podFailurePolicy"] == {"rules": [{"action": "FailJob", "onExitCodes": {
      "containerName": "train", "operator": "NotIn", "values": [137, 143]}}]}
  assert spec["failurePolicy"] == {"maxRestarts": 3, "rules": [
      {"name": "TrainerExitStatus", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]}]}
  [container] = job["template"]["spec"]["containers"]
  assert container["name"] == "train" and container["workingDir"] == "/zoo"


@pytest.mark.parametrize("which", ["one_slice", "two_slices"])
def test_no_log_lives_only_on_the_pods_disk(manifests, which):
  """Metrics and TensorBoard events go to the gs:// workdir (train.log_dir left at its default, the workdir)."""
  pod = manifests[which]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
  [container] = pod["containers"]
  assert "--workdir=gs://my-bucket/zoo/pi" in container["command"]
  assert not [a for a in container["command"] if a.startswith(("--config.train.log_dir", "--config.train.workdir"))]
  assert "volumes" not in pod and "volumeMounts" not in container


def test_coordinator_ttl_and_queue(manifests):
  one, two = manifests["one_slice"], manifests["two_slices"]
  for document in (one, two):
    assert document["spec"]["coordinator"] == {"replicatedJob": "slice", "jobIndex": 0, "podIndex": 0}
  container = two["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]
  env = {e["name"]: e.get("value") for e in container["env"]}
  assert env["MEGASCALE_COORDINATOR_ADDRESS"] == "zoo-pi-slice-0-0.zoo-pi"  # the pod spec.coordinator names
  assert one["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600 and two["spec"]["ttlSecondsAfterFinished"] == 3600
  assert "labels" not in one["metadata"]
  assert two["metadata"]["labels"] == {"kueue.x-k8s.io/queue-name": "team-a"}
