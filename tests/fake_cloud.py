"""A stand-in for `gcloud` and `kubectl` on PATH (`python fake_cloud.py gcloud ARGS...` behind a two-line wrapper
script per program name): records every call and answers from a scenario.

`$FAKE_CLOUD_DIR/calls.jsonl` gets one JSON list (the program name, then its arguments) per call. The scenario,
`$FAKE_CLOUD_DIR/scenario.json`, is a list of rules `{"match": SUBSTRING, "outputs": [ANSWER, ...]}`: the first rule
whose substring occurs in the joined command line answers with its next output (the last one repeats); an answer
is a string for stdout (exit 0) or `{"rc": N, "stderr": TEXT}` (stderr optional). Commands no rule matches print
nothing and exit 0. A `tpu-vm scp` that no rule fails copies its file into `$FAKE_CLOUD_DIR/worker_home/` (one fake
worker's home directory).
`gcloud config get-value PROP` reads the local gcloud config, not the cloud: it is answered from
`$FAKE_CLOUD_DIR/gcloud_config.json` (nothing for an unset property) and not recorded.
"""

import json
import os
import shutil
import sys

directory = os.environ["FAKE_CLOUD_DIR"]
argv = sys.argv[1:]
if argv[:3] == ["gcloud", "config", "get-value"]:
  config = os.path.join(directory, "gcloud_config.json")
  print(json.load(open(config)).get(argv[3], "") if os.path.exists(config) else "")
  sys.exit(0)
with open(os.path.join(directory, "calls.jsonl"), "a") as f:
  f.write(json.dumps(argv) + "\n")
path = os.path.join(directory, "scenario.json")
rules = json.load(open(path)) if os.path.exists(path) else []
line = " ".join(argv)
for rule in rules:
  if rule["match"] in line:
    answer = rule["outputs"][0]
    if len(rule["outputs"]) > 1:
      rule["outputs"].pop(0)
      json.dump(rules, open(path, "w"))
    if isinstance(answer, dict):
      if "stderr" in answer:
        print(answer["stderr"], file=sys.stderr)
      sys.exit(answer["rc"])
    print(answer)
    break
if argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]:
  home = os.path.join(directory, "worker_home")
  os.makedirs(home, exist_ok=True)
  shutil.copy(argv[5], os.path.join(home, argv[6].split(":", 1)[1]))
