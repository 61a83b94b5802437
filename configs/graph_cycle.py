r"""Graphormer (or Graphormer + URPE) on whether a random graph has a cycle of length k (default 3: a triangle).

  python -m launch.train --config=configs/graph_cycle.py:graphormer --workdir=/tmp/zoo/graph_cycle
  python -m launch.train --config=configs/graph_cycle.py:graphormer_urpe --workdir=/tmp/zoo/graph_cycle_urpe

The argument is the graph encoding plus an optional ",smoke"; the model and training follow configs/graph_distance.py.
"""

from configs.graph_distance import graph_config


def get_config(arg: str | None = None):
  return graph_config(dict(name="graph_cycle", min_nodes=8, max_nodes=16, extra_edges=0.2, cycle_length=3,
                           max_hops=5, num_train=20_000, num_eval=512, seed=0), arg)
