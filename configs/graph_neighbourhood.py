r"""Graphormer (or Graphormer + URPE) counting, for every node, the other nodes within distance 2 (node labels).

  python -m launch.train --config=configs/graph_neighbourhood.py:spd_urpe --workdir=/tmp/zoo/graph_nb_urpe

Same model and training as configs/graph_distance.py; a ",smoke" variant runs in seconds.
"""

from configs.graph_distance import random_graph_config


def get_config(arg: str | None = None):
  return random_graph_config("graph_neighbourhood", arg, radius=2)
