"""The graph family: shortest paths against networkx, the spatial + edge bias against an explicit loop, permutation
invariance / equivariance, padding, URPE on graphs with C = 1 = Graphormer, and the kernels' refusal of graph
relations."""

import re

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from flax import nnx

from conftest import tiny
from zoo import attention, models, positional
from zoo.data.tasks.graphs import graph_example, pad_graph, random_connected_graph, shortest_paths
from zoo.positional.graph import GRAPH_TOKEN, UNREACHABLE, Graph

GRAPH_FIELDS = ("mask", "spd", "in_degree", "out_degree", "edge_features", "edge_paths")
TINY_GRAPH = dict(num_layers=2, d_model=16, attention=dict(num_heads=2), mlp=dict(dim=32), vocab_size=5,
                  num_node_features=2, edge_vocab_size=4, num_edge_features=2, max_hops=3)
HOPS = 3


def random_graph_example(seed, num_nodes=7, connected=True):
  """A random graph with random node / edge features; a second component when not `connected`."""
  rng = np.random.default_rng(seed)
  graph = random_connected_graph(rng, num_nodes, 0.4)
  if not connected:
    graph.add_edges_from([(num_nodes, num_nodes + 1), (num_nodes + 1, num_nodes + 2)])
  n = graph.number_of_nodes()
  edges = np.array(sorted(graph.edges()), np.int32)
  return graph, graph_example(rng.integers(0, 5, (n, 2)), edges, rng.integers(0, 4, (len(edges), 2)),
                              np.float32(0.0), HOPS)


def batch_of(examples, nodes=16, edges=32):
  padded = [pad_graph(e, nodes, edges) for e in examples]
  return {k: jnp.asarray(np.stack([p[k] for p in padded])) for k in padded[0] if k != "targets"}


def perturbed(model, seed=1, scale=0.5):
  """Every positional and edge-encoding parameter moved off its initial value (C ≠ 1, biases not tiny)."""
  keys = iter(jax.random.split(jax.random.key(seed), 1000))
  def move(path, x):
    hit = any(getattr(p, "key", p) in ("positional", "edges") for p in path)
    return x + scale * jax.random.normal(next(keys), x.shape) if hit else x
  nnx.update(model, jax.tree_util.tree_map_with_path(move, nnx.state(model, nnx.Param)))
  return model


def graph_model(pe="spd", **overrides):
  return perturbed(models.build("graph", tiny(pe, TINY_GRAPH, **overrides)))


@nnx.jit
def run(model, batch):
  return model(batch["inputs"], **{k: batch[k] for k in GRAPH_FIELDS})


@pytest.mark.parametrize("seed", range(4))
def test_shortest_paths_equal_networkx(seed):
  graph, _ = random_graph_example(seed, num_nodes=9, connected=seed % 2 == 0)
  n = graph.number_of_nodes()
  edges = np.array(sorted(graph.edges()), np.int32)
  spd, paths = shortest_paths(n, edges, max_hops=HOPS)
  expected = np.full((n, n), -1)
  for source, lengths in nx.all_pairs_shortest_path_length(graph):
    for target, length in lengths.items():
      expected[source, target] = length
  np.testing.assert_array_equal(spd, expected)
  for i in range(n):  # each stored path is a walk from i along min(spd, HOPS) edges towards j
    for j in range(n):
      ids = [e for e in paths[i, j] if e >= 0]
      assert len(ids) == (min(spd[i, j], HOPS) if spd[i, j] >= 0 else 0)
      node = i
      for step, e in enumerate(ids, start=1):
        a, b = edges[e]
        assert node in (a, b)
        node = b if node == a else a
        assert spd[i, node] == step and spd[node, j] == spd[i, j] - step


def test_bias_equals_an_explicit_graphormer_loop():
  """Spatial bias (SPD buckets, unreachable and graph-token rows) + edge encoding, element by element in numpy."""
  model = graph_model(graph_token=False)
  _, example = random_graph_example(0, connected=False)
  batch = batch_of([example])
  enc = model.backbone.positional
  edge_bias = model.edges(batch["edge_features"], batch["edge_paths"])
  spd = np.asarray(batch["spd"]).copy()
  spd[0, 0, 1:3] = GRAPH_TOKEN  # a few graph-token pairs, to check their row
  graph = Graph(spd=jnp.asarray(spd), in_degree=batch["in_degree"], out_degree=batch["out_degree"],
                edge_bias=edge_bias)
  positions = jnp.zeros(spd.shape[:2], jnp.int32)
  coords = positional.Coordinates(positions, graph)
  got = np.asarray(attention.dense_sum(enc.logit_bias(coords, coords), attention.Tile.whole(positions, positions)))
  spatial, d = np.asarray(enc.spatial[...]), enc.options.max_distance
  edge_table = np.asarray(model.edges.embed.table.embedding[...])
  hops, vocab = np.asarray(model.edges.hops[...]), TINY_GRAPH["edge_vocab_size"]
  features, paths = np.asarray(batch["edge_features"][0]), np.asarray(batch["edge_paths"][0])
  n = spd.shape[1]
  want = np.zeros((1, 2, n, n))
  for i in range(n):
    for j in range(n):
      s = spd[0, i, j]
      row = d + 2 if s == GRAPH_TOKEN else d + 1 if s == UNREACHABLE else min(s, d)
      edge = np.zeros(2)
      ids = [e for e in paths[i, j] if e >= 0]
      for hop, e in enumerate(ids):
        embedded = np.mean([edge_table[c * vocab + features[e, c]] for c in range(features.shape[1])], axis=0)
        edge += embedded @ hops[hop]
      want[0, :, i, j] = spatial[:, row] + (edge / len(ids) if ids else 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sequence_reading_is_a_path_graph():
  """Without a graph the SPD of tokens i, j is |k_pos - q_pos| (clipped at max_distance) and every degree is 2."""
  with nnx.use_eager_sharding(False):
    enc = positional.build("spd_urpe", {"max_distance": 3}, positional.ModelDims(2, 4, 8, 32, False),
                           rngs=nnx.Rngs(0))
  enc.c[...] = jax.random.normal(jax.random.key(0), enc.c.shape)
  q_pos, k_pos = jnp.array([[0, 4, 9]]), jnp.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
  distance = np.minimum(np.abs(np.asarray(k_pos)[:, None, :] - np.asarray(q_pos)[:, :, None]), 3)
  q, k = positional.Coordinates(q_pos), positional.Coordinates(k_pos)
  for table, term in ((enc.spatial, enc.logit_bias(q, k)), (enc.c, enc.prob_scale(q, k))):
    assert isinstance(term, attention.RelativeTable)
    np.testing.assert_allclose(np.asarray(term.values(attention.Tile.whole(q_pos, k_pos))),
                               np.asarray(table[...])[:, distance].transpose(1, 0, 2, 3))
  x = jnp.zeros((1, 3, 8))
  np.testing.assert_allclose(np.asarray(enc.embed(x, q))[0, 1],
                             np.asarray(enc.in_degree[...][2] + enc.out_degree[...][2]), rtol=1e-6)


def permuted(example, node_order, edge_order):
  """The same graph with node k' = node_order[k'] and edge m' = edge_order[m'] (paths remapped consistently)."""
  new_edge_id = np.argsort(edge_order)
  paths = example["edge_paths"][np.ix_(node_order, node_order)]
  return {**example, "inputs": example["inputs"][node_order], "edge_features": example["edge_features"][edge_order],
          "spd": example["spd"][np.ix_(node_order, node_order)], "in_degree": example["in_degree"][node_order],
          "out_degree": example["out_degree"][node_order], "edge_paths": np.where(paths >= 0, new_edge_id[paths], -1)}


@pytest.mark.parametrize("pe", ["spd", "spd_urpe"])
@pytest.mark.parametrize("graph_token", [True, False])
def test_graph_outputs_are_invariant_and_node_outputs_equivariant_to_node_order(pe, graph_token):
  _, example = random_graph_example(3, num_nodes=8)
  rng = np.random.default_rng(0)
  nodes, edges = rng.permutation(8), rng.permutation(len(example["edge_features"]))
  batch = batch_of([example, permuted(example, nodes, edges)])
  graph_out = np.asarray(run(graph_model(pe, graph_token=graph_token, num_classes=3), batch))
  np.testing.assert_allclose(graph_out[0], graph_out[1], rtol=1e-5, atol=1e-5)
  node_out = np.asarray(run(graph_model(pe, graph_token=graph_token, head="node", num_classes=3), batch))
  np.testing.assert_allclose(node_out[0][nodes], node_out[1][:8], rtol=1e-5, atol=1e-5)
  assert not np.allclose(node_out[0][:8], node_out[1][:8], atol=1e-3)  # the nodes do differ from each other


@pytest.mark.parametrize("head", ["graph", "node"])
def test_padding_nodes_and_edges_change_nothing(head):
  model = graph_model("spd_urpe", head=head, graph_token=head == "graph")
  _, example = random_graph_example(5, num_nodes=7)
  small, large = batch_of([example], 8, 16), batch_of([example], 24, 40)
  # Whatever the padding nodes carry must not matter either.
  rng = np.random.default_rng(1)
  large["inputs"] = large["inputs"].at[:, 7:].set(jnp.asarray(rng.integers(0, 5, (1, 17, 2))))
  large["in_degree"] = large["in_degree"].at[:, 7:].set(3)
  a, b = np.asarray(run(model, small)), np.asarray(run(model, large))
  if head == "node":
    a, b = a[:, :7], b[:, :7]
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", ["graph", "node"])
def test_urpe_on_graphs_with_c_equal_one_is_graphormer(head):
  urpe = graph_model("spd_urpe", head=head)
  urpe.backbone.positional.c[...] = jnp.ones_like(urpe.backbone.positional.c[...])
  plain = models.build("graph", tiny("spd", TINY_GRAPH, head=head), seed=7)
  urpe_params = {path: v for path, v in nnx.to_flat_state(nnx.state(urpe, nnx.Param)) if path[-1] != "c"}
  copied = [(path, urpe_params[path]) for path, _ in nnx.to_flat_state(nnx.state(plain, nnx.Param))]
  assert len(copied) == len(urpe_params), "the two models should have the same parameters apart from C"
  nnx.update(plain, nnx.from_flat_state(copied))
  _, example = random_graph_example(2, connected=False)
  batch = batch_of([example, random_graph_example(4)[1]])
  np.testing.assert_allclose(np.asarray(run(urpe, batch)), np.asarray(run(plain, batch)), rtol=1e-5, atol=1e-5)
  urpe.backbone.positional.c[...] = urpe.backbone.positional.c[...] * 0.5
  assert not np.allclose(np.asarray(run(urpe, batch)), np.asarray(run(plain, batch)), atol=1e-4)


REFUSING = [name for name, core in attention.CORES.items()
            if not core.serves(attention.RelationTable(jnp.ones((2, 5)), jnp.zeros((1, 4, 4), jnp.int32)))]
SERVING = [name for name in attention.CORES if name not in REFUSING]


@pytest.mark.parametrize("impl", REFUSING)
def test_cores_that_do_not_serve_graph_relations_refuse_them(impl):
  q = jnp.ones((1, 4, 2, 8))
  mask = attention.AttentionMask(q_pos=jnp.zeros((1, 4), jnp.int32), k_pos=jnp.zeros((1, 4), jnp.int32))
  term = attention.RelationTable(table=jnp.ones((2, 5)), relation=jnp.zeros((1, 4, 4), jnp.int32))
  with pytest.raises(ValueError, match="use impl='chunked' or 'xla'"):
    attention.attend(q, q, q, impl=impl, mask=mask, bias=(term,))
  with pytest.raises(ValueError, match=r"attention.impl( must be 'chunked' or 'xla'|='linear' cannot apply)"):
    models.build("graph", tiny(base=TINY_GRAPH, attention=dict(impl=impl)))


@pytest.mark.parametrize("impl", [name for name in SERVING if name != "xla"])
def test_cores_that_serve_graph_relations_give_the_reference_model_outputs(impl):
  """(Block-by-block equality of the graph terms is in test_attention_kernels.py.)"""
  _, example = random_graph_example(2, connected=False)
  batch = batch_of([example, random_graph_example(4)[1]])
  outputs = [np.asarray(run(graph_model("spd_urpe", head="node", num_classes=3, attention=dict(impl=name)), batch))
             for name in ("xla", impl)]
  np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)


def test_graph_config_errors():
  with pytest.raises(ValueError, match="positional.name must be a graph encoding"):
    models.build("graph", tiny("rope", TINY_GRAPH))
  with pytest.raises(ValueError, match="max_hops must be >= 0"):
    models.build("graph", dict(TINY_GRAPH, max_hops=-1))
  with pytest.raises(ValueError, match="max_distance must be >= 1"):
    models.build("graph", tiny(base=TINY_GRAPH, positional=dict(options={"max_distance": 0})))
  model = models.build("graph", TINY_GRAPH)
  _, example = random_graph_example(0)
  batch = batch_of([example])
  with pytest.raises(ValueError, match="needs edge_features and edge_paths"):
    model(batch["inputs"], **{k: batch[k] for k in ("mask", "spd", "in_degree", "out_degree")})
  with pytest.raises(ValueError, match="does not fit"):
    pad_graph(example, 4, 32)
