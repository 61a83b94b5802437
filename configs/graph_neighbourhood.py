r"""Graphormer (or Graphormer + URPE) counting, for every node, the nodes within distance 2 (node classification).

  python -m launch.train --config=configs/graph_neighbourhood.py:graphormer --workdir=/tmp/zoo/graph_neighbourhood
  python -m launch.train --config=configs/graph_neighbourhood.py:graphormer_urpe --workdir=/tmp/zoo/graph_nb_urpe

The argument is the graph encoding plus an optional ",smoke"; the model and training follow configs/graph_distance.py.
"""

from configs.graph_distance import graph_config


def get_config(arg: str | None = None):
  return graph_config(dict(name="graph_neighbourhood", min_nodes=8, max_nodes=16, extra_edges=0.2, radius=2,
                           max_hops=5, num_train=20_000, num_eval=512, seed=0), arg)
