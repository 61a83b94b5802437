r"""The URPE paper's synthetic-task comparison at CPU size: one training run per encoding, then a table.

  python -m launch.reproduce_urpe                         # Position Identification, rpe vs urpe (the README demo)
  python -m launch.reproduce_urpe --task=etp --encodings=none,rpe,urpe,alibi,rope,sinusoidal

Each run is `configs/<task>.py:<encoding>` trained by the same loop as `launch.train`, in <workdir>/<task>_<encoding>
(so an interrupted comparison resumes). Prints eval accuracy per encoding; chance is 1/length for PI, ≈ 0.5 for ETP.
"""

from __future__ import annotations

import importlib
import os

from absl import app, flags, logging

_TASK = flags.DEFINE_enum("task", "pi", ["pi", "etp"], "Position Identification or Even Token Prediction")
_ENCODINGS = flags.DEFINE_list("encodings", ["rpe", "urpe"], "positional encodings to compare")
_WORKDIR = flags.DEFINE_string("workdir", os.path.join("/tmp", "zoo", "reproduce_urpe"), "runs go here")
_STEPS = flags.DEFINE_integer("steps", None, "override the config's training steps")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from zoo.platform import skip_tpu_runtime_without_chips  # noqa: PLC0415 — before JAX starts
  skip_tpu_runtime_without_chips()
  from zoo.train import loop  # noqa: PLC0415

  module = importlib.import_module(f"configs.{_TASK.value}")
  results = {}
  for encoding in _ENCODINGS.value:
    config = module.get_config(encoding)
    if _STEPS.value:
      config.train.steps = _STEPS.value
    print(f"--- {_TASK.value}: training with {encoding} for {config.train.steps} steps", flush=True)
    summary = loop.train_and_evaluate(config.to_dict(), os.path.join(_WORKDIR.value, f"{_TASK.value}_{encoding}"))
    results[encoding] = summary["eval_accuracy"]
  print(f"\n{_TASK.value} eval accuracy (length {module.get_config().task.length}):")
  for encoding, accuracy in results.items():
    print(f"  {encoding:<12} {accuracy:.3f}")


if __name__ == "__main__":
  app.run(main)
