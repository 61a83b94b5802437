"""Graph tasks: stored records and padded batches, targets against networkx, option errors, and a short training
run on the marked-distance task that learns."""

import jax
import networkx as nx
import numpy as np
import pytest

from configs import graph_distance
from zoo.data import make_dataset, prepare, tasks
from zoo.data.tasks.graphs import bucket
from zoo.train.loop import train_and_evaluate


def test_buckets_round_up_to_multiples_of_eight():
  assert [bucket(n) for n in (1, 8, 9, 16, 17)] == [8, 8, 16, 16, 24]


def test_records_store_precomputed_shortest_paths_and_batches_pad_them(data_dir):
  task = tasks.build("graph_neighbourhood", dict(min_nodes=5, max_nodes=10, num_train=16, num_eval=8, max_hops=3))
  source = prepare(task, data_dir).as_data_source(split="train")
  example = source[0]
  n = example["inputs"].shape[0]
  assert example["spd"].shape == (n, n) and example["edge_paths"].shape == (n, n, 3)  # stored unpadded
  batch = next(iter(make_dataset(task, source, batch_size=4, seed=0, train=True)))
  assert batch["inputs"].shape == (4, 16, 1) and batch["spd"].shape == (4, 16, 16)
  assert batch["edge_paths"].shape == (4, 16, 16, 3) and batch["edge_features"].shape == (4, task.max_edges, 1)
  for row in range(4):
    real = int(batch["mask"][row].sum())
    assert np.all(batch["spd"][row, real:] == -1) and np.all(batch["spd"][row, :, real:] == -1)
    np.testing.assert_array_equal(batch["weights"][row], batch["mask"][row].astype(np.float32))
    # The stored SPDs are a graph's: symmetric, 0 on the diagonal, and the degrees count its distance-1 pairs.
    spd = batch["spd"][row, :real, :real]
    np.testing.assert_array_equal(spd, spd.T)
    np.testing.assert_array_equal(np.diag(spd), 0)
    np.testing.assert_array_equal((spd == 1).sum(1), batch["in_degree"][row, :real])
    # Node-level targets: the number of other nodes within distance 2.
    np.testing.assert_array_equal(batch["targets"][row, :real], ((spd >= 1) & (spd <= 2)).sum(1))


def stored_graph(example) -> nx.Graph:
  """The graph behind a stored example, rebuilt from its distance-1 pairs."""
  spd = example["spd"]
  graph = nx.Graph()
  graph.add_nodes_from(range(spd.shape[0]))
  graph.add_edges_from(zip(*np.nonzero(spd == 1)))
  return graph


@pytest.mark.parametrize("name,check", [
    ("graph_marked_distance", lambda g, e: e["targets"] == nx.shortest_path_length(
        g, *np.nonzero(e["inputs"][:, 0])[0].tolist())),
    ("graph_cycle", lambda g, e: e["targets"] == int(sum(nx.triangles(g).values()) > 0)),  # k = 3: a triangle
])
def test_graph_targets_agree_with_networkx(name, check):
  task = tasks.build(name, dict(num_train=24, num_eval=4))
  for _, example in task.examples("train"):
    assert check(stored_graph(example), example)


def test_graph_task_option_errors():
  with pytest.raises(ValueError, match="min_nodes <= max_nodes"):
    tasks.build("graph_marked_distance", dict(min_nodes=9, max_nodes=8))
  with pytest.raises(ValueError, match="cycle_length must be in"):
    tasks.build("graph_cycle", dict(cycle_length=2))
  with pytest.raises(ValueError, match="radius must be >= 1"):
    tasks.build("graph_neighbourhood", dict(radius=0))


def test_short_training_run_learns_marked_distances(data_dir, tmp_path):
  """Predicting the mean distance gives an MSE of the targets' variance, ≈ 1.05 on these graphs (6-10 nodes); a
  1-layer Graphormer gets the validation MSE below 0.65 in 200 steps (≈ 0.49 measured)."""
  config = graph_distance.get_config("graphormer").to_dict()
  config["task"].update(min_nodes=6, max_nodes=10, max_hops=3, num_train=1024, num_eval=128)
  config["model"].update(num_layers=1, d_model=16, num_heads=2, mlp_dim=32, max_hops=2)
  config["optimizer"].update(learning_rate=5e-3, warmup_steps=10)
  config["train"].update(steps=200, batch_size=32, log_every=50, checkpoint_every=0, data_dir=data_dir,
                         progress_bar=False)
  summary = train_and_evaluate(config, str(tmp_path / "work"), devices=jax.devices()[:1])
  assert summary["eval_loss"] < 0.65, summary
