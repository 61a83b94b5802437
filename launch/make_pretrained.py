r"""Trains the shipped checkpoints and writes them: checkpoints/<name>.safetensors, manifest.json, the table of
docs/pretrained.md.

  python -m launch.make_pretrained                 # every model of `suite()` (see the time below)
  python -m launch.make_pretrained --only lm_rope  # one of them (the others' manifest entries are kept)

The suite:
- a PE-matched decoder suite: one byte-level LM (configs/lm_bytes.py at `LM_SIZE`) trained on the same data for the
  same steps with every registered encoding a decoder builds with, under softmax attention, and the SPE encodings
  (made for kernelized attention) also under linear attention, so two of them differ only in how position enters;
- the URPE paper's encoders: Position Identification with `rpe` and `urpe`, Even Token Prediction with `urpe`;
- Graphormer with `spd` and `spd_urpe` on the marked-node distance task.
Each model is stored in bfloat16 when that moves its metric by at most `BF16_TOLERANCE` (relative), else float32;
the manifest's metric is measured on the stored parameters by `zoo.train.evaluation` (what `launch.evaluate` runs).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
import re
import tempfile
import time

from absl import flags, logging

from launch import jsonl
from launch.cli import fail, run

_ONLY = flags.DEFINE_multi_string("only", None, "make only these names (repeatable)")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "tfds data directory for training ('' = the default)")
_OUT = jsonl.define_out_flag("write the files and manifest here instead of checkpoints/ (then the table of "
                             "docs/pretrained.md is left alone)")

# The decoder suite's size, chosen for a 2-core CPU machine: ≈ 0.15M parameters, 128-byte documents, 500 steps of 16
# rows. Measured there while other jobs shared the cores (December 2026): 2-3 min per softmax model, 12-27 min for
# each SPE model (its noise and filters cost more than the rest of the model), so the whole suite takes ≈ 1.5-2 h;
# 1M parameters (configs/lm_bytes.py's size) would be ≈ 8x that. The architecture is configs/lm_bytes.py's otherwise.
# One document per row (no packing): linear attention cannot separate packed documents, and every model of the suite
# must see the very same rows.
LM_SIZE = {"task": dict(length=128, pack=False),
           "model": dict(num_layers=2, d_model=64, attention=dict(num_heads=4), mlp=dict(dim=256)),
           "optimizer": dict(warmup_steps=50),
           "train": dict(steps=500, batch_size=16, eval_batches=20, checkpoint_every=500)}
LM_LINEAR = ("spe_conv", "spe_sine")  # also trained with attention.impl="linear" (SPE is made for it)
LINEAR_FEATURES = 64  # FAVOR+ random features of the linear-attention models (the default 256 is 4× slower here)
BF16_TOLERANCE = 0.005
ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE_PAGE = ROOT / "docs" / "pretrained.md"  # the shipped models' table, between these two markers:
TABLE_BEGIN, TABLE_END = "<!-- pretrained table: begin -->", "<!-- pretrained table: end -->"


@dataclasses.dataclass(frozen=True)
class Spec:
  config: str  # "configs/<file>.py:<arg>"
  overrides: dict  # section -> {option: value}, a model section's own sections nested ({"attention": {...}})
  metric: str  # an evaluation metric (eval_loss, eval_accuracy, eval_mae)

  def experiment(self) -> dict:
    path, arg = self.config.split(":")
    config = importlib.import_module(path.removesuffix(".py").replace("/", ".")).get_config(arg)
    for section, options in self.overrides.items():
      config[section].update(options)  # a ConfigDict's update: nested sections key by key
    return config.to_dict()

  def train_command(self) -> str:
    flat = [f"--config.{key}={value}" for key, value in dotted(self.overrides)]
    return " ".join(["python -m launch.train", f"--config={self.config}", *flat, "--workdir=..."])


def dotted(options: dict, prefix: str = "") -> list[tuple[str, object]]:
  """{"model": {"attention": {"num_heads": 4}}} → [("model.attention.num_heads", 4)]: command-line override keys."""
  return [pair for key, value in options.items()
          for pair in (dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else [(prefix + key, value)])]


def suite() -> dict[str, Spec]:
  """Every shipped model by name (the decoder suite grows with the encoding registry)."""
  from zoo import models, positional  # noqa: PLC0415

  def decoders(impl: str, encodings) -> dict[str, Spec]:
    specs = {}
    for pe in encodings:
      core = {"num_features": LINEAR_FEATURES} if impl == "linear" else {}
      model = {**LM_SIZE["model"], "attention": {**LM_SIZE["model"]["attention"], "impl": impl, "core": core},
               "positional": {"name": pe}}
      try:
        models.parse_config("decoder", model)
      except ValueError:  # an encoding a decoder cannot use
        continue
      specs[f"lm_{pe}" + ("_linear" if impl == "linear" else "")] = Spec(
          f"configs/lm_bytes.py:{pe}", {**LM_SIZE, "model": model}, "eval_loss")
    return specs

  return {  # the slow linear-attention models last
      **decoders("xla", positional.available()),
      "pi_rpe": Spec("configs/pi.py:rpe", {}, "eval_accuracy"),
      "pi_urpe": Spec("configs/pi.py:urpe", {}, "eval_accuracy"),
      "etp_urpe": Spec("configs/etp.py:urpe", {"train": dict(steps=1000, checkpoint_every=1000)}, "eval_accuracy"),
      "graph_spd": Spec("configs/graph_distance.py:spd", {}, "eval_mae"),
      "graph_spd_urpe": Spec("configs/graph_distance.py:spd_urpe", {}, "eval_mae"),
      **decoders("linear", LM_LINEAR),
  }


def make(name: str, spec: Spec, data_dir: str, out: pathlib.Path) -> dict:
  """Trains `spec`, stores its parameters in `out` and returns its manifest entry."""
  import jax.numpy as jnp  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from zoo import pretrained  # noqa: PLC0415
  from zoo.checkpoints import tensors  # noqa: PLC0415
  from zoo.data import prepare  # noqa: PLC0415
  from zoo.train import evaluation, loop  # noqa: PLC0415
  from zoo.train.options import parse_experiment  # noqa: PLC0415

  config = spec.experiment()
  config["train"].update(data_dir=data_dir, progress_bar=False)
  experiment = parse_experiment(config)
  prepare(experiment.task, experiment.train.resolved_data_dir)  # before the clock: the wall time is training's
  with tempfile.TemporaryDirectory() as workdir:
    begin = time.perf_counter()
    loop.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - begin
    params = pretrained.load_params(workdir).params
  as_bf16 = {p: v.astype(jnp.bfloat16) for p, v in params.items()}
  exact = evaluation.evaluate_params(config, params, name)[spec.metric]
  rounded = evaluation.evaluate_params(config, {p: v.astype(np.float32) for p, v in as_bf16.items()},
                                       name)[spec.metric]
  bf16 = abs(rounded - exact) <= BF16_TOLERANCE * max(abs(exact), 1e-3)
  file = f"{name}.safetensors"
  tensors.write(out / file, as_bf16 if bf16 else params)
  config["train"].update(data_dir="", progress_bar=True)
  return {
      "name": name, "family": experiment.model_name, "task": config["task"]["name"],
      "encoding": config["model"]["positional"]["name"],
      "attention": config["model"]["attention"]["impl"], "config": config,
      "metric": {"name": spec.metric, "value": rounded if bf16 else exact, "float32_value": exact,
                 "split": "validation", "batches": config["train"]["eval_batches"] or "all"},
      "parameters": int(sum(v.size for v in params.values())), "storage": "bfloat16" if bf16 else "float32",
      "steps": config["train"]["steps"], "wall_time_s": round(wall, 1),
      "files": {file: pretrained.file_entry(out / file)},
      "command": f"python -m launch.make_pretrained --only {name}", "train_command": spec.train_command(),
  }


def table(entries: dict) -> str:
  """The shipped models' table of docs/pretrained.md, from the manifest."""
  rows = ["| name | family | encoding | attention | task | metric (validation) | parameters | storage |",
          "|---|---|---|---|---|---|---|---|"]
  for name in sorted(entries):
    e = entries[name]
    rows.append(f"| `{name}` | {e['family']} | {e['encoding']} | {e['attention']} | {e['task']} | "
                f"{e['metric']['name']} = {e['metric']['value']:.4f} | {e['parameters']:,} | {e['storage']} |")
  return "\n".join(rows)


def write_table(entries: dict, page: pathlib.Path = TABLE_PAGE) -> None:
  text = page.read_text()
  pattern = re.compile(re.escape(TABLE_BEGIN) + ".*?" + re.escape(TABLE_END), re.S)
  page.write_text(pattern.sub(lambda _: f"{TABLE_BEGIN}\n{table(entries)}\n{TABLE_END}", text))


def main() -> None:
  logging.set_verbosity(logging.WARNING)
  from zoo import pretrained  # noqa: PLC0415 — after flag parsing, before JAX starts

  specs = suite()
  unknown = sorted(set(_ONLY.value or ()) - set(specs))
  if unknown:
    fail(f"unknown pretrained name(s) {', '.join(unknown)}; valid choices: {', '.join(specs)}")
  out = pathlib.Path(_OUT.value) if _OUT.value else pretrained.CHECKPOINTS
  out.mkdir(parents=True, exist_ok=True)
  entries = pretrained.manifest(out)
  for name in _ONLY.value or specs:
    entries[name] = make(name, specs[name], _DATA_DIR.value, out)
    (out / pretrained.MANIFEST).write_text(json.dumps({"models": dict(sorted(entries.items()))}, indent=1) + "\n")
    if out == pretrained.CHECKPOINTS:
      write_table(entries)
    print(f"{name}: {entries[name]['metric']} in {entries[name]['wall_time_s']} s", flush=True)


if __name__ == "__main__":
  run(main)
