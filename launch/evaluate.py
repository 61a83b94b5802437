r"""Evaluates a shipped model or a training workdir on its task's validation split (or another config's).

  python -m launch.evaluate --pretrained=lm_rope
  python -m launch.evaluate --workdir=/tmp/zoo/pi_urpe [--step=400]
  python -m launch.evaluate --pretrained=lm_alibi --length=512          # the same task at another length
  python -m launch.evaluate --pretrained=pi_urpe --config=configs/etp.py:urpe --config.task.length=64

Prints the metrics as one JSON line (for a shipped name, with the manifest's value of its metric) and appends them
to the workdir's metrics.jsonl when there is a workdir. The metrics are the training loop's, over the validation
split's first `train.eval_batches` batches, so a shipped name reproduces its manifest metric.
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging

from launch.cli import define_config_flag, define_model_flags, fail, load_config, model_source, parse_flags

_PRETRAINED, _WORKDIR, _STEP = define_model_flags()
_CONFIG = define_config_flag("evaluate on this experiment config's task instead of the model's own (the model "
                             "section must build the same parameters)")
_LENGTH = flags.DEFINE_integer("length", None, "evaluate at this sequence length (sets task.length)")


def main(argv: list[str]) -> None:
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}")
  source, step = model_source(_PRETRAINED, _WORKDIR, _STEP)
  config = load_config(_CONFIG)

  from zoo import pretrained  # noqa: PLC0415 — after flag parsing, before JAX starts
  from zoo.train import evaluation  # noqa: PLC0415

  try:
    loaded = pretrained.load_params(source, step)
  except pretrained.CheckpointError as e:
    fail(str(e))
  config = config or loaded.config
  if _LENGTH.value is not None:
    if "length" not in config["task"]:
      fail(f"task {config['task'].get('name')!r} has no length option")
    config["task"]["length"] = _LENGTH.value
  try:
    metrics = evaluation.evaluate_params(config, loaded.params, loaded.source)
  except ValueError as e:  # the config, or parameters that do not fit its model
    fail(str(e))
  line = {"source": loaded.source, "task": config["task"]["name"], "length": config["task"].get("length"), **metrics}
  if _PRETRAINED.value:
    metric = pretrained.info(source)["metric"]
    line["manifest"] = {metric["name"]: metric["value"]}
  print(json.dumps(line), flush=True)
  if loaded.workdir is not None:
    log_dir = loaded.config["train"].get("log_dir") or str(loaded.workdir)
    with open(os.path.join(log_dir, "metrics.jsonl"), "a") as f:
      f.write(json.dumps({"step": loaded.step, "evaluate": {k: line[k] for k in ("task", "length")}, **metrics})
              + "\n")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
