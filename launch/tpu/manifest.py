"""A Kubernetes JobSet for training on one or several TPU slices of a GKE cluster (what xpk / MaxText submit).

One replicated job `slice` with one Job per slice (`replicas` = slices); each Job runs one pod per TPU VM of its
slice (`parallelism` = `completions` = chips / chips per VM), pinned by node selectors to the accelerator and
topology, asking for the VM's chips as `google.com/tpu`. The exclusive-topology annotation keeps each Job on one
node pool (one physical slice). GKE gives each pod `TPU_WORKER_ID` / `TPU_WORKER_HOSTNAMES`, which is all that
`jax.distributed.initialize()` needs inside a slice; several slices also need the `MEGASCALE_*` variables set here
(the first pod of slice 0 coordinates, as `spec.coordinator` names it; a pod's slice is its Job's index).

Restarts only on infrastructure failures, as xpk does: each Job's `podFailurePolicy` fails the Job at once when the
trainer exits with any status but the kill signals' (`RESTART_EXIT_CODES`) — exit 2 is a bad config, exit 1 a
non-finite loss or a crash, which a restart would only repeat — and the JobSet's failure policy turns that Job
failure (reason `PodFailurePolicy`) into a failed JobSet. A pod killed by a signal, evicted or lost with its node
fails its Job through `backoffLimit: 0` instead, and the JobSet restarts (`failurePolicy.maxRestarts` times) and
resumes from the latest checkpoint in the `gs://` workdir. Pods get SIGTERM and `terminationGracePeriodSeconds` to
save one, but Spot GKE nodes give a pod about 15 s whatever the manifest says: the SIGTERM save is best effort there
and the periodic checkpoints (`train.checkpoint_every`) are what a restart resumes from. A finished JobSet is
deleted after `ttlSecondsAfterFinished`; `--queue` submits it to a Kueue LocalQueue.
"""

from __future__ import annotations

import dataclasses
import math
import re

from launch.tpu import checks
from zoo.config import check

API_VERSION = "jobset.x-k8s.io/v1alpha2"
# GKE's TPU accelerator labels and the chips of one multi-host TPU VM.
ACCELERATORS = {"tpu-v4-podslice": 4, "tpu-v5-lite-podslice": 4, "tpu-v5p-slice": 4, "tpu-v6e-slice": 4}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MEGASCALE_PORT = "8081"  # the value Ray's TPU support uses
CONTAINER = "train"
WORKING_DIR = "/zoo"  # the image's checkout (launch/tpu/Dockerfile): configs/... resolve from here
# SIGKILL (the grace period ran out); SIGTERM (launch.train after its SIGTERM save, or killed before it handled it).
RESTART_EXIT_CODES = (137, 143)


def check_name(name: str, what: str, max_length: int = 63) -> None:
  """A Kubernetes object name that is a DNS-1123 label: lowercase alphanumerics and '-', alphanumeric at both ends."""
  check(len(name) <= max_length and DNS_LABEL.match(name) is not None,
        f"{what} {name!r} is not a valid Kubernetes name: lowercase letters, digits and '-', starting and ending "
        f"with a letter or digit, at most {max_length} characters")


@dataclasses.dataclass(frozen=True)
class JobSpec:
  name: str
  image: str
  accelerator: str  # a key of ACCELERATORS
  topology: str  # e.g. "4x4"
  slices: int
  workdir: str  # gs://...
  config: str  # configs/<name>.py[:arg]
  overrides: tuple[str, ...]  # --config.x=y
  max_restarts: int = 3
  grace_seconds: int = 120
  ttl_seconds: int = 7 * 24 * 3600
  queue: str = ""  # a Kueue LocalQueue, or "" without Kueue

  def __post_init__(self):
    # Pod host names are <jobset>-slice-<job>-<pod> (DNS labels, <= 63): leave room for the suffix.
    check_name(self.name, "manifest: name", max_length=40)
    check(self.accelerator in ACCELERATORS, f"manifest: unknown accelerator {self.accelerator!r}; valid choices: "
                                            f"{', '.join(ACCELERATORS)}")
    check(re.fullmatch(r"\d+(x\d+){1,2}", self.topology) is not None,
          f"manifest: topology must look like 4x4 or 2x2x2, got {self.topology!r}")
    check(self.slices >= 1, f"manifest: slices must be >= 1, got {self.slices}")
    check(self.ttl_seconds >= 0, f"manifest: ttl must be >= 0 seconds, got {self.ttl_seconds}")
    if self.queue:
      check_name(self.queue, "manifest: queue")
    checks.gcs_workdir(self.workdir, "manifest: --workdir")
    checks.config_args(self.config, list(self.overrides))

  @property
  def chips(self) -> int:
    return math.prod(int(n) for n in self.topology.split("x"))

  @property
  def chips_per_vm(self) -> int:
    return min(self.chips, ACCELERATORS[self.accelerator])

  @property
  def vms(self) -> int:
    return self.chips // self.chips_per_vm


def container_args(spec: JobSpec) -> list[str]:
  """The arguments of `launch.train` in every pod; the user's overrides last, so they win. `train.log_dir` stays at
  its default, the `gs://` workdir: metrics and TensorBoard events outlive the pod. `launch.tpu manifest` checks the
  config they make before it writes anything."""
  return ["--distributed", f"--workdir={spec.workdir}", f"--config={spec.config}",
          f"--config.mesh.slices={spec.slices}", *spec.overrides]


def jobset(spec: JobSpec) -> dict:
  """The JobSet as a dict (write it with yaml.safe_dump)."""
  env = [{"name": "JAX_PLATFORMS", "value": "tpu"}]
  if spec.slices > 1:
    env += [
        {"name": "MEGASCALE_COORDINATOR_ADDRESS", "value": f"{spec.name}-slice-0-0.{spec.name}"},
        {"name": "MEGASCALE_NUM_SLICES", "value": str(spec.slices)},
        {"name": "MEGASCALE_SLICE_ID",
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['jobset.sigs.k8s.io/job-index']"}}},
        {"name": "MEGASCALE_PORT", "value": MEGASCALE_PORT},
    ]
  container = {
      "name": CONTAINER,
      "image": spec.image,
      "workingDir": WORKING_DIR,
      "command": ["python", "-m", "launch.train", *container_args(spec)],  # an argv: no shell reads it
      "env": env,
      "ports": [{"containerPort": 8471}, {"containerPort": int(MEGASCALE_PORT)}, {"containerPort": 8482}],
      "resources": {"limits": {"google.com/tpu": spec.chips_per_vm}},
  }
  pod = {
      "hostNetwork": True,
      "dnsPolicy": "ClusterFirstWithHostNet",
      "restartPolicy": "Never",
      "terminationGracePeriodSeconds": spec.grace_seconds,
      "nodeSelector": {"cloud.google.com/gke-tpu-accelerator": spec.accelerator,
                       "cloud.google.com/gke-tpu-topology": spec.topology},
      "containers": [container],
  }
  fail_on_exit = {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "NotIn",
                                                        "values": list(RESTART_EXIT_CODES)}}
  job = {"parallelism": spec.vms, "completions": spec.vms, "backoffLimit": 0,
         "podFailurePolicy": {"rules": [fail_on_exit]}, "template": {"spec": pod}}
  metadata = {"name": spec.name,
              "annotations": {"alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"}}
  if spec.queue:
    metadata["labels"] = {"kueue.x-k8s.io/queue-name": spec.queue}
  return {
      "apiVersion": API_VERSION,
      "kind": "JobSet",
      "metadata": metadata,
      "spec": {
          "failurePolicy": {"maxRestarts": spec.max_restarts,
                            "rules": [{"name": "TrainerExitStatus", "action": "FailJobSet",
                                       "onJobFailureReasons": ["PodFailurePolicy"]}]},
          "coordinator": {"replicatedJob": "slice", "jobIndex": 0, "podIndex": 0},
          "ttlSecondsAfterFinished": spec.ttl_seconds,
          "replicatedJobs": [{"name": "slice", "replicas": spec.slices, "template": {"spec": job}}],
      },
  }
