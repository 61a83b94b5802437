#!/usr/bin/env bash
# Creates (or reuses) a Cloud TPU VM slice, copies this checkout to every worker, installs zoo and runs one training
# job on all workers at once: `launch.train --distributed` lets JAX discover the slice, checkpoints go to GCS.
#
#   launch/tpu/train_on_tpu_vm.sh NAME ZONE ACCELERATOR RUNTIME GS_WORKDIR CONFIG [--config.x=y ...]
#   launch/tpu/train_on_tpu_vm.sh zoo-v5e europe-west4-b v5litepod-16 v2-alpha-tpuv5-lite \
#       gs://my-bucket/zoo/lm_rope configs/lm_bytes.py:rope --config.mesh.fsdp=4
#
# Check the fit first, on any machine: python -m launch.train --config=... --aot_topology=v5e:4x4
# Needs the gcloud CLI, authenticated, with TPU quota in ZONE. Not exercised by CI (it has no cloud access).
set -euo pipefail
if [ $# -lt 6 ]; then
  sed -n '2,10p' "$0"; exit 2
fi
name=$1 zone=$2 accelerator=$3 runtime=$4 workdir=$5 config=$6
shift 6
overrides=$(printf ' %q' "$@")
repo=$(cd "$(dirname "$0")/../.." && pwd)

if ! gcloud compute tpus tpu-vm describe "$name" --zone="$zone" >/dev/null 2>&1; then
  gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$accelerator" --version="$runtime"
fi
tar -C "$repo" --exclude=.venv --exclude=.git -czf /tmp/zoo_src.tgz .
gcloud compute tpus tpu-vm scp /tmp/zoo_src.tgz "$name":~/zoo_src.tgz --zone="$zone" --worker=all
gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="
  set -e; mkdir -p ~/zoo && tar -C ~/zoo -xzf ~/zoo_src.tgz && cd ~/zoo
  python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu,gcs]'
  .venv/bin/python -m launch.train --distributed --config=$config --workdir=$workdir \
      --config.train.log_dir=\$HOME/zoo_logs $overrides"
