"""The training configuration, validated in full before anything is compiled.

An experiment config (an `ml_collections.ConfigDict`, see `configs/`) has the sections below. Each section is read
into an option dataclass with `zoo.config.from_options`, so an unknown key, a mistyped value or an invalid choice
fails with a message that names the section and the valid keys or choices; cross-section consistency (sizes that
must divide, keys the task fixes) is checked here too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from zoo import models
from zoo.config import check, from_options
from zoo.data import tasks

MESH_AXES = ("data", "fsdp", "tensor")
SECTIONS = ("task", "model", "optimizer", "train", "mesh", "sharding_rules")
DEFAULT_DATA_DIR = os.path.join("~", ".cache", "zoo", "tfds")


@dataclasses.dataclass(frozen=True)
class MeshOptions:
  """Device-mesh axis sizes; one of them may be -1 (all remaining devices).

  `slices` > 1 trains on several TPU slices joined by the data-centre network (DCN, multi-slice): the `data` axis
  spans the slices (its size counts all of them and must be a multiple of `slices`), `fsdp` and `tensor` stay inside
  each slice on the fast chip interconnect. No new axis name: the only traffic across slices is the data-parallel
  gradient reduction, which the `data` axis already carries, so every sharding rule keeps its meaning (MaxText folds
  its `dcn_data_parallelism` into its data axis the same way).
  """

  data: int = -1
  fsdp: int = 1
  tensor: int = 1
  slices: int = 1

  def __post_init__(self):
    sizes = (self.data, self.fsdp, self.tensor)
    check(all(s == -1 or s >= 1 for s in sizes), f"mesh: axis sizes must be >= 1 or -1, got {sizes}")
    check(sizes.count(-1) <= 1, f"mesh: at most one axis may be -1 (the rest), got {sizes}")
    check(self.slices >= 1, f"mesh: slices must be >= 1, got {self.slices}")

  def shape(self, num_devices: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) sizes whose product is `num_devices`."""
    sizes = [self.data, self.fsdp, self.tensor]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
      check(num_devices % known == 0,
            f"mesh: {num_devices} devices cannot be split into {dict(zip(MESH_AXES, sizes))} (-1 = the rest)")
      sizes[sizes.index(-1)] = num_devices // known
    check(math.prod(sizes) == num_devices, f"mesh: {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} "
                                           f"devices, but {num_devices} are available")
    check(sizes[0] % self.slices == 0, f"mesh: the data axis ({sizes[0]}) must be a multiple of slices "
                                       f"({self.slices}): it is the axis that spans the slices")
    return tuple(sizes)


@dataclasses.dataclass(frozen=True)
class OptimizerOptions:
  name: Literal["adamw", "sgd"] = "adamw"
  learning_rate: float = 1e-3  # peak
  schedule: Literal["constant", "cosine", "linear", "rsqrt"] = "cosine"
  warmup_steps: int = 100  # linear warm-up from 0 to the peak
  end_factor: float = 0.0  # cosine / linear: final learning rate = end_factor × peak
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  momentum: float = 0.9  # sgd
  weight_decay: float = 0.0  # decoupled, on weight matrices only (not norms, biases, positional tables: zoo.decay)
  clip_norm: float = 1.0  # global-norm gradient clipping; 0 = off
  # The parameters whose path matches this regex (re.search; "" = none) learn at lr_factor × the schedule's rate.
  lr_factor_params: str = ""
  lr_factor: float = 1.0

  def __post_init__(self):
    check(self.learning_rate > 0, f"optimizer: learning_rate must be > 0, got {self.learning_rate}")
    check(self.warmup_steps >= 0, f"optimizer: warmup_steps must be >= 0, got {self.warmup_steps}")
    check(self.clip_norm >= 0, f"optimizer: clip_norm must be >= 0, got {self.clip_norm}")
    check(self.lr_factor > 0, f"optimizer: lr_factor must be > 0, got {self.lr_factor}")


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  steps: int = 1000
  batch_size: int = 64  # global, over all processes and devices
  grad_accum_steps: int = 1  # the batch is split into this many micro-batches, one optimizer update per step
  seed: int = 0  # parameters, dropout / feature noise and data order
  log_every: int = 50
  eval_every: int = 0  # 0: evaluate at the end only
  eval_batch_size: int = 0  # 0: batch_size
  eval_batches: int = 0  # 0: the whole validation split
  checkpoint_every: int = 500  # 0: checkpoint at the end only
  max_to_keep: int = 3
  data_dir: str = ""  # where tfds writes the task's array_record files; "" = $ZOO_DATA_DIR or ~/.cache/zoo/tfds
  log_dir: str = ""  # metrics.jsonl and TensorBoard events; "" = the workdir (required when the workdir is remote)
  progress_bar: bool = True
  profile_steps: str = ""  # "FIRST:END": a jax.profiler trace of steps FIRST..END-1 in <log_dir>/profile; "" = off
  # Fine-tuning (zoo/train/init_from.py): start from the parameters of a pretrained name, a workdir or a checkpoint
  # folder; never used when the workdir has a checkpoint of its own (that is a resume).
  init_from: str = ""
  init_from_step: int = 0  # 0: the latest checkpoint of an init_from workdir
  init_from_allow_mismatch: bool = False  # True: parameters whose shape differs are initialised afresh
  trainable: str = ""  # regex (re.search) over parameter paths; the others stay frozen; "" = all

  def __post_init__(self):
    try:
      re.compile(self.trainable)
    except re.error as e:
      raise ValueError(f"train: trainable {self.trainable!r} is not a regular expression ({e})") from None
    check(self.init_from_step >= 0, f"train: init_from_step must be >= 0, got {self.init_from_step}")
    check(self.init_from or not (self.init_from_step or self.init_from_allow_mismatch),
          "train: init_from_step and init_from_allow_mismatch need init_from")
    for name in ("steps", "batch_size", "grad_accum_steps", "log_every", "max_to_keep"):
      check(getattr(self, name) >= 1, f"train: {name} must be >= 1, got {getattr(self, name)}")
    for name in ("eval_every", "eval_batch_size", "eval_batches", "checkpoint_every"):
      check(getattr(self, name) >= 0, f"train: {name} must be >= 0, got {getattr(self, name)}")
    check(self.batch_size % self.grad_accum_steps == 0,
          f"train: grad_accum_steps ({self.grad_accum_steps}) must divide batch_size ({self.batch_size})")
    self.profile_range  # noqa: B018 — validates profile_steps

  @property
  def profile_range(self) -> tuple[int, int] | None:
    """profile_steps "5:8" → (5, 8), a half-open range of steps like a Python slice; None when off."""
    if not self.profile_steps:
      return None
    parts = self.profile_steps.split(":")
    valid = len(parts) == 2 and all(p.strip().isdigit() for p in parts) and 1 <= int(parts[0]) < int(parts[1])
    check(valid, f"train: profile_steps must be \"FIRST:END\" with 1 <= FIRST < END (traces steps FIRST..END-1) or "
                 f"\"\" (off), got {self.profile_steps!r}")
    return int(parts[0]), int(parts[1])

  @property
  def resolved_eval_batch_size(self) -> int:
    return self.eval_batch_size or self.batch_size

  @property
  def resolved_data_dir(self) -> str:
    return os.path.expanduser(self.data_dir or os.environ.get("ZOO_DATA_DIR", DEFAULT_DATA_DIR))


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A validated experiment: everything the training loop reads."""

  task: tasks.Task
  model_name: str
  model: Any  # the family's Config dataclass
  optimizer: OptimizerOptions
  train: TrainOptions
  mesh: MeshOptions
  rules: tuple[tuple[str, tuple[str, ...]], ...]  # logical axis name -> mesh axes

  def check_devices(self, num_devices: int, process_count: int = 1) -> tuple[int, int, int]:
    """The mesh shape for `num_devices`, after checking that the batches split evenly over it."""
    shape = self.mesh.shape(num_devices)
    batch_axes = dict(self.rules).get("batch", ())
    parallel = math.prod(shape[MESH_AXES.index(axis)] for axis in batch_axes)
    t = self.train
    micro_label = "batch_size / grad_accum_steps" if t.grad_accum_steps > 1 else "batch_size"
    for label, size in ((micro_label, t.batch_size // t.grad_accum_steps),
                        ("eval_batch_size", t.resolved_eval_batch_size)):
      check(size % parallel == 0, f"train: {label} ({size}) must be divisible by the data-parallel size "
                                  f"{parallel} (mesh axes {', '.join(batch_axes)} of {dict(zip(MESH_AXES, shape))})")
      check(size % process_count == 0, f"train: {label} ({size}) must be divisible by the number of processes "
                                       f"({process_count})")
    tensor = shape[MESH_AXES.index("tensor")]
    heads = self.model.attention.num_heads
    check("tensor" not in dict(self.rules).get("heads", ()) or heads % tensor == 0,
          f"mesh: the tensor axis ({tensor}) must divide model.attention.num_heads ({heads})")
    return shape


# The sections read into option dataclasses; their fields' defaults are the only defaults (configs/base.py is derived).
OPTION_SECTIONS = {"optimizer": OptimizerOptions, "train": TrainOptions, "mesh": MeshOptions}
# Logical axis → mesh axes (comma-separated; "" = replicated). FSDP shards the model width and the batch, tensor
# parallelism the heads, the MLP width and the vocabulary; the stacked axis of scanned layers stays whole.
SHARDING_RULES = dict(batch="data,fsdp", embed="fsdp", heads="tensor", kv="", mlp="tensor", vocab="tensor", layers="")


def default_sections() -> dict[str, dict[str, Any]]:
  """Every section of an experiment config at its defaults: each option dataclass field, the sharding rules, an
  empty `task` section and a `model` section of sub-sections holding only their open mappings, empty (the task names
  the family whose defaults fill the rest; being there, `--config.model.attention.num_heads=8` and
  `--config.model.attention.core.num_features=64` can set a key in any config)."""
  options = {name: {f.name: f.default for f in dataclasses.fields(cls)} for name, cls in OPTION_SECTIONS.items()}
  return {"task": {}, "model": models.config.open_mappings(), **options, "sharding_rules": dict(SHARDING_RULES)}


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
  """`config` (a JSON-like dict) with every option field it leaves out at its default: two configs that train the same
  run compare equal however many defaults each states (a workdir's config.json may predate a new field)."""
  filled = dict(config)
  for name, fields in default_sections().items():
    if name in OPTION_SECTIONS and isinstance(config.get(name, {}), Mapping):
      filled[name] = {**fields, **config.get(name, {})}
  return filled


def _section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
  value = config.get(name, {})
  if not isinstance(value, Mapping):
    raise ValueError(f"config: section {name!r} must be a mapping, got {type(value).__name__}")
  return dict(value)


def parse_rules(rules: Mapping[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
  """Logical-axis rules: {"embed": "fsdp", "batch": "data,fsdp", "kv": ""} → (("embed", ("fsdp",)), ...)."""
  parsed = []
  for logical, axes in rules.items():
    if not isinstance(axes, str):
      raise ValueError(f"sharding_rules: {logical!r} must map to a comma-separated string of mesh axes, got "
                       f"{axes!r}")
    names = tuple(a.strip() for a in axes.split(",") if a.strip())
    for axis in names:
      check(axis in MESH_AXES, f"sharding_rules: {logical!r} -> {axis!r} is not a mesh axis; valid choices: "
                               f"{', '.join(MESH_AXES)}")
    parsed.append((logical, names))
  return tuple(parsed)


def task_of(config: Mapping[str, Any]) -> tasks.Task:
  """The task of an experiment config's `task` section (a ValueError naming the valid tasks when it names none)."""
  task_options = _section(config, "task")
  task_name = task_options.pop("name", None)
  check(task_name is not None, f"config: task.name is missing; valid choices: {', '.join(tasks.available())}")
  return tasks.build(task_name, task_options)


def options_for_task(model: Mapping[str, Any], task: tasks.Task) -> dict[str, Any]:
  """A model's options less the fields `task` sets (vocabulary, length, classes): the model moved onto `task`."""
  return {k: v for k, v in model.items() if k not in task.model_fields()}


def parse_experiment(config: Mapping[str, Any]) -> Experiment:
  """Validates a whole experiment config; raises ValueError with a one-line message naming the problem.

  `model_name`, which `zoo.pretrained.load` adds to every config it returns, may be present: it must be the family
  the task trains (that is where the family comes from)."""
  unknown = sorted(set(config) - {*SECTIONS, "model_name"})
  check(not unknown, f"config: unknown section(s) {', '.join(map(repr, unknown))}; valid sections: "
                     f"{', '.join(SECTIONS)}")
  task = task_of(config)
  task_name = task.name
  family = config.get("model_name", task.family)
  check(family == task.family, f"config: model_name {family!r} cannot train task {task_name!r} (a {task.family} "
                               f"task)")
  model_options = _section(config, "model")
  fixed = sorted(set(model_options) & set(task.model_fields()))
  check(not fixed, f"model: {', '.join(fixed)} fixed by task {task_name!r}; set them in the task section instead")
  model = models.parse_config(task.family, {**model_options, **task.model_fields()})
  train = from_options(TrainOptions, _section(config, "train"), what="train")
  return Experiment(task=task, model_name=task.family, model=model,
                    optimizer=from_options(OptimizerOptions, _section(config, "optimizer"), what="optimizer"),
                    train=train, mesh=from_options(MeshOptions, _section(config, "mesh"), what="mesh"),
                    rules=parse_rules(_section(config, "sharding_rules")))
