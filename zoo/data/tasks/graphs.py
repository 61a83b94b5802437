"""Graph tasks for the graph family: random graphs (networkx) whose targets need structure, as tfds builders.

Every example is stored unpadded with what the model needs precomputed, so training never runs a graph algorithm:

    inputs [n, node_columns] int, edge_features [e, edge_columns] int,
    spd [n, n] int (-1 unreachable), edge_paths [n, n, max_hops] int (edge ids along one shortest path, -1 pad),
    in_degree / out_degree [n] int, targets [] (graph level) or [n] (node level)

`GraphTask.fixed_shape`, which the pipeline calls, pads each example to the task's bucketed node and edge counts
(`pad_graph`, `bucket`) and adds the node mask (and, for node-level targets, the weights). Tasks:

* `graph_marked_distance` — two nodes carry feature 1; the target is their shortest-path distance (regression).
* `graph_cycle` — does the graph contain a cycle of length exactly `cycle_length` (graph classification).
* `graph_neighbourhood` — per node, how many nodes lie within distance `radius` (node classification).
* `molecules` — a loader: SMILES + target CSV files (ZINC / PCQM4M release format) turned into graphs with RDKit
  atom and bond features (graph regression).

Example i of a random split comes from a generator seeded by (seed, split, i): the data set is a pure function of
the options, and the builder's name (`examples.data_name`) digests all of them (and the loader's files).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any, ClassVar

import networkx as nx
import numpy as np
import tensorflow_datasets as tfds

from zoo.config import check
from zoo.data.tasks.base import Task
from zoo.data.tasks.examples import Example, TaskExamples, data_name, require_file, tensor
from zoo.data.tasks.registry import register

SPLITS = ("train", "validation")
NODE_BUCKET = 8  # node and edge counts are padded to multiples of this


def bucket(count: int, multiple: int = NODE_BUCKET) -> int:
  """The padded size of `count` nodes or edges: the next multiple of `multiple` (at least one multiple)."""
  return max(multiple, -(-count // multiple) * multiple)


def matrix(shape: tuple[int | None, ...]) -> tfds.features.Tensor:
  """An int32 tensor with several unknown dimensions (tfds stores those only with an encoding)."""
  return tfds.features.Tensor(shape=shape, dtype=np.int32, encoding=tfds.features.Encoding.ZLIB)


def shortest_paths(num_nodes: int, edges: np.ndarray, max_hops: int) -> tuple[np.ndarray, np.ndarray]:
  """Breadth-first search from every node of an undirected graph.

  edges [e, 2] -> spd [n, n] int32 (-1 where unreachable) and paths [n, n, max_hops] int32: the ids of the first
  ≤ max_hops edges of one shortest path from i to j (the one BFS finds visiting neighbours in edge order), -1 pad.
  """
  neighbours: list[list[tuple[int, int]]] = [[] for _ in range(num_nodes)]
  for edge_id, (a, b) in enumerate(np.asarray(edges).reshape(-1, 2).tolist()):
    neighbours[a].append((b, edge_id))
    neighbours[b].append((a, edge_id))
  spd = np.full((num_nodes, num_nodes), -1, np.int32)
  paths = np.full((num_nodes, num_nodes, max_hops), -1, np.int32)
  for source in range(num_nodes):
    spd[source, source] = 0
    route: dict[int, list[int]] = {source: []}  # node -> edge ids of its path from `source`, truncated
    queue = collections.deque([source])
    while queue:
      node = queue.popleft()
      for other, edge_id in neighbours[node]:
        if spd[source, other] < 0:
          spd[source, other] = spd[source, node] + 1
          route[other] = (route[node] + [edge_id])[:max_hops]
          paths[source, other, :len(route[other])] = route[other]
          queue.append(other)
  return spd, paths


def graph_example(node_features: np.ndarray, edges: np.ndarray, edge_features: np.ndarray, targets: Any,
                  max_hops: int) -> Example:
  """One stored example (see the module docstring) of an undirected graph."""
  num_nodes = node_features.shape[0]
  edges = np.asarray(edges, np.int32).reshape(-1, 2)
  spd, paths = shortest_paths(num_nodes, edges, max_hops)
  degree = np.bincount(edges.reshape(-1), minlength=num_nodes).astype(np.int32)
  return {"inputs": np.asarray(node_features, np.int32),
          "edge_features": np.asarray(edge_features, np.int32).reshape(edges.shape[0], -1), "spd": spd,
          "edge_paths": paths, "in_degree": degree, "out_degree": degree, "targets": targets}


def pad_graph(example: dict[str, np.ndarray], nodes: int, edges: int) -> dict[str, np.ndarray]:
  """An example padded to `nodes` nodes and `edges` edges, plus `mask` [nodes] (real nodes) and, for node-level
  targets, `weights` [nodes]. Padding nodes are unreachable (spd -1) and have no edges; padding edges are on no
  path, so neither can change a real node's output."""
  n = example["inputs"].shape[0]
  e = example["edge_features"].shape[0]
  check(n <= nodes and e <= edges, f"a graph with {n} nodes and {e} edges does not fit {nodes} nodes / {edges} edges")

  def pad(x, sizes, value=0):
    return np.pad(x, [(0, s - d) for s, d in zip(sizes, x.shape)] + [(0, 0)] * (x.ndim - len(sizes)),
                  constant_values=value)

  padded = {"inputs": pad(example["inputs"], (nodes,)), "edge_features": pad(example["edge_features"], (edges,)),
            "spd": pad(example["spd"], (nodes, nodes), -1), "edge_paths": pad(example["edge_paths"], (nodes, nodes), -1),
            "in_degree": pad(example["in_degree"], (nodes,)), "out_degree": pad(example["out_degree"], (nodes,)),
            "mask": np.arange(nodes) < n}
  targets = example["targets"]
  if np.ndim(targets) == 1:  # node level
    padded.update(targets=pad(targets, (nodes,)), weights=padded["mask"].astype(np.float32))
  else:
    padded["targets"] = targets
  return padded


def random_connected_graph(rng: np.random.Generator, num_nodes: int, extra_edges: float) -> nx.Graph:
  """A random spanning tree (each node joins an earlier one) plus ≈ extra_edges · n random edges, nodes shuffled."""
  graph = nx.Graph()
  graph.add_nodes_from(range(num_nodes))
  graph.add_edges_from((i, int(rng.integers(0, i))) for i in range(1, num_nodes))
  for _ in range(rng.binomial(num_nodes, min(extra_edges, 1.0))):
    a, b = rng.choice(num_nodes, 2, replace=False).tolist()
    graph.add_edge(a, b)
  order = rng.permutation(num_nodes)
  return nx.relabel_nodes(graph, dict(zip(range(num_nodes), order.tolist())))


class GraphTask(Task):
  """A graph data set: stored examples (see `graph_example`) padded to `bucket(max_nodes)` nodes. Subclasses set
  the feature columns and vocabularies, the head, and `examples(split)`."""

  family = "graph"
  num_node_columns: ClassVar[int] = 1
  node_vocab: ClassVar[int] = 2
  num_edge_columns: ClassVar[int] = 1
  edge_vocab: ClassVar[int] = 1
  head: ClassVar[str] = "graph"  # or "node": one target per node
  target_dtype: ClassVar[type] = np.int32

  @property
  def length(self) -> int:
    """Padded node count (the graph token, if any, is the model's own)."""
    return bucket(self.options.max_nodes)

  @property
  def max_edges(self) -> int:
    """Padded edge count: room for a spanning tree plus max_nodes more edges (molecules and the random graphs
    here stay below it; `pad_graph` names any graph that does not)."""
    n = self.options.max_nodes
    return bucket(min(n * (n - 1) // 2, 2 * n - 1))

  def fixed_shape(self, example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pad_graph(example, self.length, self.max_edges)

  def model_fields(self) -> dict[str, Any]:
    return {"vocab_size": self.node_vocab, "num_node_features": self.num_node_columns,
            "edge_vocab_size": self.edge_vocab, "num_edge_features": self.num_edge_columns,
            "max_length": self.length + 1, "head": self.head, "num_classes": self.num_classes}

  @property
  def num_classes(self) -> int:
    """Model outputs per graph or node (1 for regression)."""
    return 1

  def examples(self, split: str) -> Iterator[tuple[Any, Example]]:
    raise NotImplementedError

  def data_files(self) -> list[pathlib.Path]:
    """Files the data is read from (their sizes and times are part of the data set's name)."""
    return []

  def builder(self, data_dir: str) -> tfds.core.DatasetBuilder:
    hops = self.options.max_hops
    features = {"inputs": tensor((None, self.num_node_columns)), "edge_features": tensor((None, self.num_edge_columns)),
                "spd": matrix((None, None)), "edge_paths": matrix((None, None, hops)), "in_degree": tensor((None,)),
                "out_degree": tensor((None,)),
                "targets": tensor((None,) if self.head == "node" else (), self.target_dtype)}
    return TaskExamples(name=data_name(self.name, self.options, self.data_files()), features=features,
                        splits={split: (lambda split=split: self.examples(split)) for split in SPLITS},
                        data_dir=data_dir)


class RandomGraphTask(GraphTask):
  """Random connected graphs with `min_nodes`..`max_nodes` nodes; subclasses set features and targets (`make`)."""

  @dataclasses.dataclass(frozen=True)
  class Options:
    min_nodes: int = 8
    max_nodes: int = 16
    extra_edges: float = 0.2  # random edges per node on top of a spanning tree
    max_hops: int = 5  # edges per shortest path stored for the edge encoding
    num_train: int = 20_000
    num_eval: int = 1_000
    seed: int = 0

    def __post_init__(self):
      check(2 <= self.min_nodes <= self.max_nodes,
            f"task: need 2 <= min_nodes <= max_nodes, got {self.min_nodes}, {self.max_nodes}")
      check(self.extra_edges >= 0, f"task: extra_edges must be >= 0, got {self.extra_edges}")
      for name in ("max_hops", "num_train", "num_eval"):
        check(getattr(self, name) >= 1, f"task: {name} must be >= 1, got {getattr(self, name)}")

  def make(self, rng: np.random.Generator, graph: nx.Graph) -> tuple[np.ndarray, Any]:
    """(node features [n, columns], targets) of `graph`."""
    raise NotImplementedError

  def examples(self, split: str) -> Iterator[tuple[int, Example]]:
    o = self.options
    for i in range(o.num_train if split == "train" else o.num_eval):
      rng = np.random.default_rng([o.seed, SPLITS.index(split), i])
      graph = random_connected_graph(rng, int(rng.integers(o.min_nodes, o.max_nodes + 1)), o.extra_edges)
      edges = np.array(sorted(graph.edges()), np.int32).reshape(-1, 2)
      node_features, targets = self.make(rng, graph)
      yield i, graph_example(node_features, edges, np.zeros((edges.shape[0], 1), np.int32), targets, o.max_hops)


@register("graph_marked_distance")
class MarkedDistance(RandomGraphTask):
  """Two marked nodes; the target is their shortest-path distance. A model blind to structure predicts the mean."""

  objective = "regression"
  target_dtype = np.float32

  def make(self, rng, graph):
    n = graph.number_of_nodes()
    a, b = rng.choice(n, 2, replace=False).tolist()
    features = np.zeros((n, 1), np.int32)
    features[[a, b], 0] = 1
    return features, np.float32(nx.shortest_path_length(graph, a, b))


@register("graph_cycle")
class Cycle(RandomGraphTask):
  """Class 1 if the graph has a simple cycle of exactly `cycle_length` nodes (default 3: a triangle)."""

  objective = "sequence_classification"
  node_vocab = 1

  @dataclasses.dataclass(frozen=True)
  class Options(RandomGraphTask.Options):
    cycle_length: int = 3

    def __post_init__(self):
      super().__post_init__()
      check(3 <= self.cycle_length <= self.max_nodes,
            f"task: cycle_length must be in [3, max_nodes], got {self.cycle_length}")

  @property
  def num_classes(self):
    return 2

  def make(self, rng, graph):
    k = self.options.cycle_length
    found = any(len(c) == k for c in nx.simple_cycles(graph, length_bound=k))
    return np.zeros((graph.number_of_nodes(), 1), np.int32), np.int32(found)


@register("graph_neighbourhood")
class Neighbourhood(RandomGraphTask):
  """Per node: how many other nodes lie within distance `radius` (a class in 0..max_nodes-1)."""

  objective = "token_classification"
  node_vocab = 1
  head = "node"

  @dataclasses.dataclass(frozen=True)
  class Options(RandomGraphTask.Options):
    radius: int = 2

    def __post_init__(self):
      super().__post_init__()
      check(self.radius >= 1, f"task: radius must be >= 1, got {self.radius}")

  @property
  def num_classes(self):
    return self.options.max_nodes

  def make(self, rng, graph):
    n = graph.number_of_nodes()
    counts = [len(nx.single_source_shortest_path_length(graph, v, cutoff=self.options.radius)) - 1
              for v in range(n)]
    return np.zeros((n, 1), np.int32), np.asarray(counts, np.int32)


ATOM_VOCAB = 128  # every atom feature column holds values below this (atomic numbers up to 118)
BOND_VOCAB = 8
BOND_TYPES = {"SINGLE": 0, "DOUBLE": 1, "TRIPLE": 2, "AROMATIC": 3}  # anything else: 4


def molecule_graph(smiles: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """SMILES -> RDKit heavy-atom graph: atom features [n, 6] (atomic number, degree, formal charge + 8, total
  hydrogens, aromatic, hybridization), bonds [e, 2], bond features [e, 3] (type, conjugated, in a ring)."""
  try:
    from rdkit import Chem, RDLogger  # noqa: PLC0415 — optional: pip install -e ".[chem]"
  except ImportError as error:
    raise ImportError("the molecule loader needs RDKit: pip install -e \".[chem]\"") from error
  RDLogger.DisableLog("rdApp.*")
  mol = Chem.MolFromSmiles(smiles)
  if mol is None:
    raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
  atoms = [[min(a.GetAtomicNum(), ATOM_VOCAB - 1), min(a.GetDegree(), 10), min(max(a.GetFormalCharge() + 8, 0), 16),
            min(a.GetTotalNumHs(), 8), int(a.GetIsAromatic()), int(a.GetHybridization())] for a in mol.GetAtoms()]
  bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
  bond_features = [[BOND_TYPES.get(str(b.GetBondType()), 4), int(b.GetIsConjugated()), int(b.IsInRing())]
                   for b in mol.GetBonds()]
  return (np.asarray(atoms, np.int32).reshape(-1, 6), np.asarray(bonds, np.int32).reshape(-1, 2),
          np.asarray(bond_features, np.int32).reshape(-1, 3))


@register("molecules")
class Molecules(GraphTask):
  """Graph regression on molecules from CSV files with a SMILES column and a target column — the release format of
  ZINC (e.g. `smiles,target` after exporting the benchmark's subset) and PCQM4M (`idx,smiles,homolumogap`)."""

  objective = "regression"
  target_dtype = np.float32
  num_node_columns, node_vocab = 6, ATOM_VOCAB
  num_edge_columns, edge_vocab = 3, BOND_VOCAB

  @dataclasses.dataclass(frozen=True)
  class Options:
    train_file: str = ""
    validation_file: str = ""
    smiles_column: str = "smiles"
    target_column: str = "target"
    max_nodes: int = 40  # heavy atoms; ZINC has at most 38, PCQM4M at most 51
    max_hops: int = 5

    def __post_init__(self):
      check(self.max_nodes >= 1, f"task: max_nodes must be >= 1, got {self.max_nodes}")
      check(self.max_hops >= 1, f"task: max_hops must be >= 1, got {self.max_hops}")

  def path(self, split: str) -> pathlib.Path:
    name = self.options.train_file if split == "train" else self.options.validation_file
    return require_file(self.name, pathlib.Path(name).expanduser(),
                        f"a CSV file with columns {self.options.smiles_column!r} and {self.options.target_column!r} "
                        f"(set task.train_file and task.validation_file)")

  def data_files(self):
    return [self.path(split) for split in SPLITS]

  def examples(self, split: str) -> Iterator[tuple[int, Example]]:
    o = self.options
    path = self.path(split)
    with path.open(newline="") as f:
      reader = csv.DictReader(f)
      missing = {o.smiles_column, o.target_column} - set(reader.fieldnames or [])
      check(not missing, f"task 'molecules': {path} has no column(s) {', '.join(sorted(missing))}; its columns: "
                         f"{', '.join(reader.fieldnames or [])}")
      for row_number, row in enumerate(reader):
        atoms, bonds, bond_features = molecule_graph(row[o.smiles_column])
        check(atoms.shape[0] <= o.max_nodes, f"task 'molecules': {path} row {row_number + 1} has {atoms.shape[0]} "
                                             f"heavy atoms, more than max_nodes ({o.max_nodes})")
        yield row_number, graph_example(atoms, bonds, bond_features, np.float32(row[o.target_column]), o.max_hops)
