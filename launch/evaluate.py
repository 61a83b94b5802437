r"""Evaluates a model on its task's validation split, or on another config's task.

  python -m launch.evaluate --pretrained=lm_rope
  python -m launch.evaluate --workdir=/tmp/zoo/pi_urpe [--step=400]
  python -m launch.evaluate --pretrained=lm_alibi --length=512          # the same task at another length
  python -m launch.evaluate --pretrained=pi_urpe --config=configs/etp.py:urpe --config.task.length=64
  python -m launch.evaluate --workdir=/tmp/zoo/tiny-llama --task=configs/lm_bytes.py:smoke

The model is any loadable source: a shipped name, a workdir, a Hugging Face directory or a `launch.convert --out`
folder. A model trained on none of zoo's tasks (Hugging Face, converted) needs `--task=<config file>`: the task
section and evaluation settings of that config, with the model as loaded (less the fields the task sets, such as
the length). `--config` instead replaces the model section too (it must build the same parameters).

Prints the metrics as one JSON line (for a shipped name, with the manifest's value of its metric) and appends them
to the workdir's metrics.jsonl when there is a workdir. The metrics are the training loop's, over the validation
split's first `train.eval_batches` batches, so a shipped name reproduces its manifest metric.
"""

from __future__ import annotations

import json
import os

from absl import flags, logging

from launch.cli import define_config_flag, define_model_flags, fail, load_config, model_source, run

_PRETRAINED, _WORKDIR, _STEP = define_model_flags()
_CONFIG = define_config_flag("evaluate on this experiment config's task instead of the model's own (the model "
                             "section must build the same parameters)")
_TASK = define_config_flag("evaluate the model as loaded on this experiment config's task (configs/<name>.py[:arg]; "
                           "its task and evaluation settings); needed by models without a zoo task", name="task")
_LENGTH = flags.DEFINE_integer("length", None, "evaluate at this sequence length (sets task.length)")


def main() -> None:
  logging.set_verbosity(logging.WARNING)
  source, step = model_source(_PRETRAINED, _WORKDIR, _STEP)
  config, task_config = load_config(_CONFIG), load_config(_TASK)
  if config is not None and task_config is not None:
    fail("give at most one of --config (another model section as well) and --task (the model as loaded)")

  from zoo import pretrained  # noqa: PLC0415 — after flag parsing, before JAX starts
  from zoo.train import evaluation  # noqa: PLC0415
  from zoo.train.options import options_for_task, task_of  # noqa: PLC0415

  try:
    loaded = pretrained.load_params(source, step)
  except pretrained.CheckpointError as e:
    fail(str(e))
  family = loaded.config["model_name"]
  if task_config is not None:
    try:
      task = task_of(task_config)
    except ValueError as e:
      fail(str(e))
    if task.family != family:
      fail(f"{loaded.source} is of family {family!r}; --task's task {task.name!r} trains family {task.family!r}")
    config = {**task_config, "model": options_for_task(loaded.config["model"], task)}
  elif config is None and "task" not in loaded.config:
    fail(f"{loaded.source} has no zoo task to evaluate on (it was trained on none of zoo's): give "
         f"--task=configs/<name>.py[:arg], e.g. --task=configs/lm_bytes.py:smoke for a byte-level decoder")
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
  if source in pretrained.available():  # a shipped name (given as --pretrained or --workdir)
    metric = pretrained.info(source)["metric"]
    line["manifest"] = {metric["name"]: metric["value"]}
  print(json.dumps(line), flush=True)
  if loaded.workdir is not None:
    log_dir = loaded.config["train"].get("log_dir") or str(loaded.workdir)
    with open(os.path.join(log_dir, "metrics.jsonl"), "a") as f:
      f.write(json.dumps({"step": loaded.step, "evaluate": {k: line[k] for k in ("task", "length")}, **metrics})
              + "\n")


if __name__ == "__main__":
  run(main)
