"""Every registered task trains end to end through its config's smoke variant (a new task is covered once registered).

Each config in configs/ names its task (or, with TASKS, takes it as its argument); a task's smoke run is the first
config (sorted by file name) that trains it.
Loader tasks read files the user has: `LOADER_FILES` writes tiny ones in the real formats and returns the task
options that point at them.
"""

import importlib
import math

import jax
import pytest

import task_files

from conftest import REPO, default_or_slow
from zoo.data import tasks
from zoo.train.loop import train_and_evaluate

LOADER_FILES = {  # task name -> function(directory) -> task option overrides
    "ner_conll2003": task_files.conll2003,
    "lra_text": task_files.imdb,
    "lra_retrieval": task_files.aan,
    "lra_image": task_files.cifar10,
    "lm_wikitext103": task_files.wikitext103,
    "lm_enwik8": task_files.enwik8,
    "lm_text8": task_files.text8,
    "molecules": task_files.molecules,
}


def smoke_configs() -> dict[str, dict]:
  """task name -> the smoke variant (as a dict) of the first experiment config file that trains it. Fine-tuning
  configs (finetune_*.py) keep their pretrained model's size, so they are not a task's tiny run (tests/
  test_pretrained.py trains them)."""
  found = {}
  for path in sorted((REPO / "configs").glob("*.py")):
    if path.stem in ("__init__", "base") or path.stem.startswith("finetune_"):
      continue
    module = importlib.import_module(f"configs.{path.stem}")
    for arg in [f"{task},smoke" for task in getattr(module, "TASKS", ())] or ["smoke"]:  # a file of several tasks
      config = module.get_config(arg).to_dict()
      found.setdefault(config["task"]["name"], config)
  return found


SMOKE = smoke_configs()


# The default suite trains one task per family and input kind: a decoder language model, a dual encoder over files
# (retrieval) and a graph regression over files (molecules) — an encoder on generated sequences is the main job's,
# trained by test_reproduce.py and test_train_cli.py; every other task trains in the slow suite (the tasks' data
# pipelines keep their default tests: test_tasks_*.py, test_graph_tasks.py, test_data.py).
DEFAULT_TASKS = ("byte_lm", "lra_retrieval", "molecules")


@pytest.mark.parametrize("name", default_or_slow(tasks.available(), DEFAULT_TASKS))
def test_every_task_trains_a_few_steps_through_its_smoke_config(name, data_dir, tmp_path):
  assert name in SMOKE, f"task {name!r} has no config in configs/"
  config = SMOKE[name]
  config["task"].update(LOADER_FILES.get(name, lambda _: {})(tmp_path))
  config["train"].update(data_dir=data_dir, progress_bar=False)
  task = tasks.build(name, {k: v for k, v in config["task"].items() if k != "name"})
  # tiny: ≤ 64 tokens, except Pathfinder's smallest workable image (12 × 12) and CIFAR-10's fixed 32 × 32
  assert task.length <= 144 or name == "lra_image"
  assert config["train"]["steps"] <= 10 and config["model"]["num_layers"] == 1 and config["model"]["d_model"] == 16
  summary = train_and_evaluate(config, str(tmp_path / "work"), devices=jax.devices()[:1])
  assert summary["step"] == config["train"]["steps"] and math.isfinite(summary["loss"])
  assert any(name.startswith("eval_") for name in summary)



# What a `,smoke` variant may change: sizes, counts and steps — never a code path (dropout, noise, attention impl,
# optimizer, schedule, weight decay, task kind).
SIZE_KEYS = {
    "task": {"num_train", "num_eval", "num_test", "num_sequences", "length", "min_length", "max_length", "min_nodes",
             "max_nodes", "vocab_size", "max_files", "image_size", "segment_length", "num_distractors", "difficulty",
             "lags"},
    "model": {"num_layers", "d_model", "max_hops", "max_length"},
    "model.attention": {"num_heads", "head_dim"},
    "model.attention.core": {"num_features"},
    "model.mlp": {"dim"},
    "optimizer": {"warmup_steps"},
    "train": {"steps", "batch_size", "log_every", "eval_every", "checkpoint_every", "eval_batches",
              "eval_batch_size"},
}


def flatten(config: dict, prefix: tuple = ()) -> dict[tuple, object]:
  flat = {}
  for key, value in config.items():
    if isinstance(value, dict) and key != "options":  # an encoding's options stay one value
      flat.update(flatten(value, prefix + (key,)))
    else:
      flat[prefix + (key,)] = value
  return flat


@pytest.mark.parametrize("path", sorted(p.stem for p in (REPO / "configs").glob("*.py")
                                        if p.stem not in ("__init__", "base")))
def test_smoke_variants_change_sizes_and_steps_only(path):
  module = importlib.import_module(f"configs.{path}")
  full, smoke = flatten(module.get_config("").to_dict()), flatten(module.get_config("smoke").to_dict())
  assert full.keys() == smoke.keys()
  changed = {key for key in full if full[key] != smoke[key]}
  assert changed, "the smoke variant changes nothing"
  code_paths = {".".join(key) for key in changed if key[-1] not in SIZE_KEYS.get(".".join(key[:-1]), ())}
  assert not code_paths, f"configs/{path}.py:smoke changes more than sizes and steps: {sorted(code_paths)}"
