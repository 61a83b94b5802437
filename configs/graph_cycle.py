r"""Graphormer (or Graphormer + URPE) on whether a random graph has a cycle of length k (default 3: a triangle).

  python -m launch.train --config=configs/graph_cycle.py:spd --workdir=/tmp/zoo/graph_cycle
  python -m launch.train --config=configs/graph_cycle.py:spd_urpe --workdir=/tmp/zoo/graph_cycle_urpe

The argument is the graph encoding plus an optional ",smoke"; the model and training follow configs/graph_distance.py.
"""

from configs.graph_distance import random_graph_config


def get_config(arg: str | None = None):
  return random_graph_config("graph_cycle", arg, cycle_length=3)
