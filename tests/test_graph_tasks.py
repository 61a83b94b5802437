"""Graph tasks: stored records and padded batches, targets against networkx, option errors, a short training run on
the marked-distance task that learns, and the SMILES + CSV molecule loader against RDKit."""

import jax
import networkx as nx
import numpy as np
import pytest

import task_files
from configs import graph_distance
from zoo.data import make_dataset, prepare, tasks
from zoo.data.tasks.graphs import bucket, graph_example, molecule_graph
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


@pytest.mark.slow  # training to a learned result; the graph family's CLI journey is test_tasks_registry's molecules
def test_short_training_run_learns_marked_distances(data_dir, tmp_path):
  """Predicting the mean distance gives an MSE of the targets' variance, ≈ 1.05 on these graphs (6-10 nodes); a
  1-layer Graphormer gets the validation MSE below 0.65 in 200 steps (≈ 0.49 measured)."""
  config = graph_distance.get_config("spd").to_dict()
  config["task"].update(min_nodes=6, max_nodes=10, max_hops=3, num_train=1024, num_eval=128)
  config["model"].update(num_layers=1, d_model=16, max_hops=2)
  config["model"]["attention"]["num_heads"], config["model"]["mlp"]["dim"] = 2, 32
  config["optimizer"].update(learning_rate=5e-3, warmup_steps=10)
  config["train"].update(steps=200, batch_size=32, log_every=50, checkpoint_every=0, data_dir=data_dir,
                         progress_bar=False)
  summary = train_and_evaluate(config, str(tmp_path / "work"), devices=jax.devices()[:1])
  assert summary["eval_loss"] < 0.65, summary


def test_molecules_become_rdkit_graphs_with_atom_and_bond_features():
  from rdkit import Chem  # noqa: PLC0415

  atoms, bonds, bond_features = molecule_graph("c1ccccc1O")  # phenol: 7 heavy atoms, a 6-ring and a C-O bond
  assert atoms.shape == (7, 6) and bonds.shape == (7, 2) and bond_features.shape == (7, 3)
  assert sorted(atoms[:, 0].tolist()) == [6] * 6 + [8]  # atomic numbers
  assert atoms[:, 4].sum() == 6  # six aromatic carbons
  assert sorted(bond_features[:, 0].tolist()) == [0] + [3] * 6  # one single bond, six aromatic ones
  assert bond_features[:, 2].sum() == 6  # six ring bonds
  charged, _, _ = molecule_graph("C[N+](C)(C)C")
  assert charged[charged[:, 0] == 7, 2].tolist() == [9]  # formal charge +1, offset by 8
  for smiles in task_files.MOLECULES:  # stored SPDs equal RDKit's own topological distance matrix
    atoms, bonds, features = molecule_graph(smiles[0])
    example = graph_example(atoms, bonds, features, np.float32(0), max_hops=3)
    np.testing.assert_array_equal(example["spd"], Chem.GetDistanceMatrix(Chem.MolFromSmiles(smiles[0])))


def test_molecule_loader_reads_csvs_and_names_bad_inputs(tmp_path, data_dir):
  options = task_files.molecules(tmp_path)
  task = tasks.build("molecules", options)
  assert task.model_fields()["num_node_features"] == 6 and task.length == 40
  source = prepare(task, data_dir).as_data_source(split="validation")
  stored = sorted((float(source[i]["targets"]), source[i]["inputs"].shape[0]) for i in range(len(source)))
  atom_counts = [3, 7, 11, 5, 9, 6, 8, 6]  # heavy atoms of task_files.MOLECULES
  want = sorted((target, n) for (_, target), n in zip(task_files.MOLECULES, atom_counts))
  np.testing.assert_allclose(stored, want, rtol=1e-6)
  batch = next(iter(make_dataset(task, source, batch_size=8, seed=0, train=False)))
  assert batch["inputs"].shape == (8, 40, 6) and sorted(batch["mask"].sum(1).tolist()) == sorted(atom_counts)
  with pytest.raises(ValueError, match="is not a file"):
    list(tasks.build("molecules", {**options, "train_file": str(tmp_path / "missing.csv")}).examples("train"))
  with pytest.raises(ValueError, match="no column"):
    list(tasks.build("molecules", {**options, "target_column": "homolumogap"}).examples("train"))
  with pytest.raises(ValueError, match="more than max_nodes"):
    list(tasks.build("molecules", {**options, "max_nodes": 4}).examples("train"))
  with pytest.raises(ValueError, match="cannot parse SMILES"):
    molecule_graph("C1CC")
