r"""Graphormer (or Graphormer + URPE) on the distance between two marked nodes of a random graph (regression).

  python -m launch.train --config=configs/graph_distance.py:spd --workdir=/tmp/zoo/graph_distance
  python -m launch.train --config=configs/graph_distance.py:spd_urpe --workdir=/tmp/zoo/graph_distance_urpe

The argument is the graph encoding (spd | spd_urpe) plus an optional ",smoke" for a seconds-long run.
Graphs of 8-16 nodes; a 2-layer model, d_model 32. The other graph configs (graph_cycle.py, graph_neighbourhood.py,
graph_zinc.py) build on the helpers here.
"""

import ml_collections

from configs.base import get_base_config, parse_arg


SMOKE_TASK = dict(min_nodes=4, max_nodes=8, num_train=64, num_eval=16)  # the random-graph tasks' smoke sizes


def graph_config(task: dict, arg: str | None, smoke_task: dict = SMOKE_TASK) -> ml_collections.ConfigDict:
  """The shared graph experiment: `task` options, the encoding and variants from `arg`; ",smoke" shrinks the model
  and the run and updates the task with `smoke_task`."""
  pe, variants = parse_arg(arg, default="spd")
  config = get_base_config()
  config.task = ml_collections.ConfigDict(task)
  config.model = ml_collections.ConfigDict(dict(
      num_layers=2, d_model=32, dropout=0.0, dtype="float32", max_hops=5, graph_token=True,
      attention=dict(num_heads=4, impl="xla", dropout=0.0, core={}), mlp=dict(dim=64, activation="gelu"),
      norm=dict(kind="layernorm", position="pre"), positional=dict(name=pe, options={})))
  config.optimizer.update(learning_rate=2e-3, warmup_steps=50, schedule="cosine", weight_decay=0.0)
  config.train.update(steps=1000, batch_size=32, log_every=50, eval_every=0, checkpoint_every=500)
  if "smoke" in variants:
    config.task.update(smoke_task)
    config.model.update(num_layers=1, d_model=16, max_hops=2, attention=dict(num_heads=2), mlp=dict(dim=32))
    config.optimizer.warmup_steps = 2
    config.train.update(steps=6, batch_size=8, log_every=2, checkpoint_every=3)
  return config


def random_graph_config(task: str, arg: str | None, **options) -> ml_collections.ConfigDict:
  """`graph_config` for a random-graph task: 8-16 nodes, 20k training graphs, plus the task's own `options`."""
  return graph_config(dict(name=task, min_nodes=8, max_nodes=16, extra_edges=0.2, max_hops=5, num_train=20_000,
                           num_eval=512, seed=0, **options), arg)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return random_graph_config("graph_marked_distance", arg)
