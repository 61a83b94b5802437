r"""Length generalisation (Delétang et al. 2023; passkey retrieval): train on inputs of length 1..40, test longer.

  python -m launch.train --config=configs/length_tasks.py:parity_check --workdir=/tmp/zoo/parity
  python -m launch.train --config=configs/length_tasks.py:passkey --workdir=/tmp/zoo/passkey --config.model.positional.name=alibi

The argument is the task (parity_check, reverse_string, duplicate_string, bucket_sort, missing_duplicate, passkey)
plus an optional ",smoke". The model is an encoder that reads the input and one answer token per output symbol
(zoo/data/tasks/length_generalisation.py); `python -m launch.extrapolate --task=NAME` trains one per encoding and
tests it at lengths up to 500.
"""

import ml_collections

from configs.base import get_base_config, parse_arg

TASKS = ("parity_check", "reverse_string", "duplicate_string", "bucket_sort", "missing_duplicate", "passkey")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  task, variants = parse_arg(arg, default="parity_check")
  if task not in TASKS:
    raise ValueError(f"config arg: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
  config = get_base_config()
  config.task = ml_collections.ConfigDict(dict(name=task, max_length=40,
                                               num_train=100_000, num_eval=1_024, seed=0))
  config.model = ml_collections.ConfigDict(dict(
      num_layers=2, d_model=64, dropout=0.0, dtype="float32",
      attention=dict(num_heads=4, impl="xla", dropout=0.0, core={}), mlp=dict(dim=256, activation="gelu"),
      norm=dict(kind="layernorm", position="pre"), positional=dict(name="rope", options={})))
  config.optimizer.update(learning_rate=1e-3, warmup_steps=100, schedule="cosine", weight_decay=0.0)
  config.train.update(steps=2000, batch_size=32, log_every=100, eval_every=0, checkpoint_every=500)
  if "smoke" in variants:
    config.task.update(max_length=10, num_train=256, num_eval=32)
    config.model.update(num_layers=1, d_model=16, attention=dict(num_heads=2), mlp=dict(dim=32))
    config.optimizer.warmup_steps = 2
    config.train.update(steps=4, batch_size=8, log_every=2, checkpoint_every=2)
  return config
