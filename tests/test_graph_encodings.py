"""GraphGPS's graph encodings — RWSE, LapPE, RRWP — against the random walk and the Laplacian computed here from
networkx's adjacency and Laplacian with numpy, their sequence readings against a long path graph's, permutation
equivariance, padding invariance, LapPE's sign flips, and `launch.reproduce graph_urpe --tiny` with them."""

import itertools

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from flax import nnx

from test_graph import batch_of, graph_model, random_graph_example, run
from test_reproduce import check_outputs, cli
from zoo import attention, experiments, positional
from zoo.data.tasks.graphs import graph_example, pad_graph, random_connected_graph
from zoo.experiments import Options
from zoo.positional.graph import GRAPH_TOKEN, Graph

GRAPHGPS = ("rwse", "lappe", "rrwp")
HEADS, D_MODEL = 2, 8


def encoding(name, options=None, max_length=64, seed=0):
  """Encoding `name` with every parameter moved off its initial value (biases not zero)."""
  with nnx.use_eager_sharding(False):
    enc = positional.build(name, options, positional.ModelDims(HEADS, 4, D_MODEL, max_length, False),
                           rngs=nnx.Rngs(seed))
  keys = iter(jax.random.split(jax.random.key(seed + 1), 100))
  nnx.update(enc, jax.tree.map(lambda x: x + 0.5 * jax.random.normal(next(keys), x.shape),
                               nnx.state(enc, nnx.Param)))
  return enc


def sample_graph(seed, num_nodes=7, isolated=0, extra_edges=0.4):
  """A random connected networkx graph on nodes 0..n-1 with `isolated` edgeless nodes appended."""
  graph = random_connected_graph(np.random.default_rng(seed), num_nodes, extra_edges)
  graph.add_nodes_from(range(num_nodes, num_nodes + isolated))
  return graph


def coordinates(graph, nodes=None, token=False, perm=None):
  """The graph's `Coordinates` as the model builds them: zoo's stored example, padded to `nodes`, with the graph
  token in front when `token`; node k' is graph node perm[k'] when `perm` is given."""
  n = graph.number_of_nodes()
  order = np.arange(n) if perm is None else np.asarray(perm)
  new_id = np.argsort(order)
  edges = np.array([(new_id[a], new_id[b]) for a, b in graph.edges()], np.int32).reshape(-1, 2)
  example = graph_example(np.zeros((n, 1)), edges, np.zeros((len(edges), 1)), np.float32(0.0), 1)
  spd = pad_graph(example, nodes or n, max(len(edges), 1))["spd"][None]  # [1, nodes, nodes]
  if token:
    spd = np.pad(spd, ((0, 0), (1, 0), (1, 0)), constant_values=GRAPH_TOKEN)
  zeros = jnp.zeros(spd.shape[:2], jnp.int32)
  return positional.Coordinates(zeros, Graph(spd=jnp.asarray(spd), in_degree=zeros, out_degree=zeros))


def adjacency(graph):
  return nx.to_numpy_array(graph, nodelist=range(graph.number_of_nodes()))


def walk_matrix(a):
  """D⁻¹A, a zero row for a node without edges."""
  degree = a.sum(1, keepdims=True)
  return np.divide(a, degree, out=np.zeros_like(a), where=degree > 0)


def path_walk_matrix(n):
  return walk_matrix(adjacency(nx.path_graph(n)))


def embedded(enc, coords):
  """The embed hook's addition for zero features: [nodes, d_model]."""
  return np.asarray(enc.embed(jnp.zeros((*coords.positions.shape, D_MODEL)), coords))[0]


def linear(layer, x):
  return x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])


# RWSE


@pytest.mark.parametrize("isolated,token,pad", [(0, False, 0), (1, True, 5), (2, False, 3)])
def test_rwse_is_the_return_probabilities_of_the_networkx_random_walk(isolated, token, pad):
  """(M^k)_ii for k = 1..K with M = D⁻¹A from networkx's adjacency, projected: an isolated node gets zeros."""
  graph = sample_graph(0, isolated=isolated)
  n, steps = graph.number_of_nodes(), 6
  enc = encoding("rwse", {"steps": steps})
  m = walk_matrix(adjacency(graph))
  walks = np.stack([np.diag(np.linalg.matrix_power(m, k)) for k in range(1, steps + 1)], axis=1)  # [n, K]
  got = embedded(enc, coordinates(graph, n + pad, token))
  assert np.isfinite(got).all()
  real = got[1:n + 1] if token else got[:n]
  np.testing.assert_allclose(real, linear(enc.project, walks), rtol=1e-5, atol=1e-5)
  if token:
    np.testing.assert_allclose(got[0], linear(enc.project, np.zeros(steps)), rtol=1e-6, atol=1e-6)
  if isolated:
    assert not walks[n - 1].any()  # the reference did see an isolated node


def test_rwse_reads_a_sequence_as_the_interior_of_a_long_path():
  steps = 7
  enc = encoding("rwse", {"steps": steps})
  m = path_walk_matrix(101)
  interior = [np.linalg.matrix_power(m, k)[50, 50] for k in range(1, steps + 1)]
  got = embedded(enc, positional.Coordinates(jnp.arange(9)[None] + 3))
  np.testing.assert_allclose(got, np.tile(linear(enc.project, np.array(interior)), (9, 1)), rtol=1e-5, atol=1e-6)


# RRWP


@pytest.mark.parametrize("token,pad", [(False, 0), (True, 4)])
def test_rrwp_is_the_networkx_random_walk_stack_projected_per_head(token, pad):
  """bias_h(i, j) = Σ_k W[h, k] (M^k)_ij, k = 0..K-1, plus W[h, K] on the graph token's pairs; the model's edge
  bias is handed on beside it."""
  graph = sample_graph(1, isolated=1)
  n, steps = graph.number_of_nodes(), 5
  enc = encoding("rrwp", {"steps": steps})
  coords = coordinates(graph, n + pad, token)
  size = coords.positions.shape[1]
  edge_bias = jax.random.normal(jax.random.key(3), (1, HEADS, size, size))
  coords = coords.replace(relation=coords.relation.replace(edge_bias=edge_bias))
  terms = enc.logit_bias(coords, coords)
  assert isinstance(terms[1], attention.DenseBias)
  tile = attention.Tile.whole(coords.positions, coords.positions)
  got = np.asarray(terms[0].values(tile))[0]  # [heads, size, size]
  m, w = walk_matrix(adjacency(graph)), np.asarray(enc.weights[...])
  stack = np.zeros((size, size, steps + 1))
  offset = 1 if token else 0
  for k in range(steps):
    stack[offset:offset + n, offset:offset + n, k] = np.linalg.matrix_power(m, k)
  stack[np.arange(size), np.arange(size), 0] = 1.0  # M⁰ = I on every node (padding and token rows are masked)
  if token:
    stack[0, :, steps] = stack[:, 0, steps] = 1.0
  want = np.einsum("ijk,hk->hij", stack, w)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(attention.dense_sum(terms, tile))[0], want + np.asarray(edge_bias)[0],
                             rtol=1e-5, atol=1e-5)


def test_rrwp_reads_a_sequence_as_the_interior_of_a_long_path():
  """A per-lag table equal to the long path's walk stack between interior nodes, zero beyond K - 1."""
  steps = 5
  enc = encoding("rrwp", {"steps": steps})
  term = enc.logit_bias(positional.Coordinates(jnp.zeros((1, 1), jnp.int32)), None)
  assert isinstance(term, attention.RelativeTable)
  m = path_walk_matrix(101)
  q_pos, k_pos = np.arange(40, 52), np.arange(36, 60)
  stack = np.stack([np.linalg.matrix_power(m, k)[np.ix_(q_pos, k_pos)] for k in range(steps)], -1)
  want = np.einsum("ijk,hk->hij", stack, np.asarray(enc.weights[...])[:, :steps])
  got = np.asarray(term.values(attention.Tile.whole(jnp.asarray(q_pos)[None], jnp.asarray(k_pos)[None])))[0]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert not want[:, 0, 9:].any() and want[:, 0, 4:9].any()  # lags ≥ K vanish, nearer ones do not


# LapPE


def canonical(vectors):
  """Each column's sign: its largest-magnitude entry positive."""
  peak = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])]
  return vectors * np.where(peak < 0, -1.0, 1.0)


def deep_set(enc, values, vectors, present):
  """GraphGPS's DeepSet over (eigenvector entry, eigenvalue) pairs: ρ(Σ_present φ(v_i, λ)), in numpy."""
  h = np.stack([vectors, np.broadcast_to(values, vectors.shape)], -1)  # [n, k, 2]
  for layer in enc.phi:
    h = np.maximum(linear(layer, h), 0.0)
  return linear(enc.rho, (h * present[None, :, None]).sum(1))


def networkx_eigenpairs(graph, count):
  """The combinatorial Laplacian's `count` smallest eigenpairs (networkx's Laplacian, numpy's eigh), padded with
  absent ones when the graph has fewer nodes."""
  values, vectors = np.linalg.eigh(nx.laplacian_matrix(graph, nodelist=range(graph.number_of_nodes())).toarray())
  assert np.diff(values).min() > 1e-3, "the test graph needs eigenvalues of multiplicity one"
  for column in vectors.T:  # and eigenvectors whose sign the canonical rule decides (no ±peak of equal size)
    peaks = column[np.abs(column) > np.abs(column).max() - 1e-3]
    assert (peaks > 0).all() or (peaks < 0).all(), "the test graph needs canonical signs that are well defined"
  n = len(values)
  present = np.arange(count) < n
  values = np.pad(values, (0, max(count - n, 0)))[:count]
  vectors = np.pad(canonical(vectors), ((0, 0), (0, max(count - n, 0))))[:, :count]
  return values, vectors, present


@pytest.mark.parametrize("count,token,pad", [(4, False, 0), (8, True, 5)])
def test_lappe_evaluates_the_networkx_laplacian_eigenpairs(count, token, pad):
  """In evaluation (canonical signs), with more eigenvectors asked for than the graph has (absent pairs count
  nothing), padding, and the graph token (zero pairs: only ρ's bias)."""
  graph = sample_graph(1)  # (seeds whose eigenpairs are unique: see networkx_eigenpairs)
  n = graph.number_of_nodes()
  enc = encoding("lappe", {"eigenvectors": count})
  enc.eval()
  got = embedded(enc, coordinates(graph, n + pad, token))
  real = got[1:n + 1] if token else got[:n]
  np.testing.assert_allclose(real, deep_set(enc, *networkx_eigenpairs(graph, count)), rtol=1e-4, atol=1e-4)
  if token:
    np.testing.assert_allclose(got[0], linear(enc.rho, np.zeros(enc.options.hidden)), rtol=1e-6, atol=1e-6)


def test_lappe_flips_signs_in_training_only():
  """Each training call draws a sign per eigenvector (all 2^k patterns possible); evaluation is the canonical one."""
  graph = sample_graph(1)
  count = 3
  enc = encoding("lappe", {"eigenvectors": count})
  coords = coordinates(graph)
  values, vectors, present = networkx_eigenpairs(graph, count)
  patterns = {signs: deep_set(enc, values, vectors * np.array(signs), present)
              for signs in itertools.product((1.0, -1.0), repeat=count)}
  seen = set()
  for _ in range(12):
    got = embedded(enc, coords)
    matches = [s for s, want in patterns.items() if np.allclose(got, want, rtol=1e-4, atol=1e-4)]
    assert len(matches) == 1
    seen.add(matches[0])
  assert len(seen) > 1
  enc.eval()
  for _ in range(2):
    np.testing.assert_allclose(embedded(enc, coords), patterns[(1.0,) * count], rtol=1e-4, atol=1e-4)


def test_lappe_reads_a_sequence_as_the_path_of_max_length_nodes():
  """The path's Laplacian eigenpairs from numpy's eigh, each vector's sign set by its first entry (the closed
  form's), against the closed form served at every position."""
  length, count = 16, 5
  enc = encoding("lappe", {"eigenvectors": count}, max_length=length)
  values, vectors = np.linalg.eigh(nx.laplacian_matrix(nx.path_graph(length)).toarray())
  vectors = vectors * np.where(vectors[0] < 0, -1.0, 1.0)
  want = deep_set(enc, values[:count], vectors[:, :count], np.ones(count, bool))
  positions = jnp.array([[3, 0, 15, 7]])
  np.testing.assert_allclose(embedded(enc, positional.Coordinates(positions)), want[np.asarray(positions[0])],
                             rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="position 16 is beyond"):
    embedded(enc, positional.Coordinates(jnp.array([[16]])))


# Every encoding


def outputs(enc, coords):
  """What the encoding adds: the embedding [nodes, d_model] or the graph bias [heads, nodes, nodes]."""
  if positional.implements(enc, "embed"):
    return embedded(enc, coords)
  tile = attention.Tile.whole(coords.positions, coords.positions)
  return np.asarray(attention.dense_sum(enc.logit_bias(coords, coords), tile))[0]


@pytest.mark.parametrize("name", GRAPHGPS)
def test_permuting_the_nodes_permutes_the_encoding(name):
  # LapPE's eigenpairs must be unique (see networkx_eigenpairs): not with an isolated node (a second eigenvalue 0).
  graph = sample_graph(1, num_nodes=8, isolated=0 if name == "lappe" else 1)
  enc = encoding(name, {"eigenvectors": 6} if name == "lappe" else None)
  enc.eval()
  perm = np.random.default_rng(0).permutation(graph.number_of_nodes())
  base, permuted = outputs(enc, coordinates(graph, 12)), outputs(enc, coordinates(graph, 12, perm=perm))
  n = len(perm)
  if base.ndim == 2:
    np.testing.assert_allclose(permuted[:n], base[perm], rtol=1e-4, atol=1e-4)
  else:
    np.testing.assert_allclose(permuted[:, :n, :n], base[:, perm][:, :, perm], rtol=1e-4, atol=1e-4)
  assert not np.allclose(permuted[:n], base[:n], atol=1e-3)  # the nodes do differ


@pytest.mark.parametrize("name,head", [(name, head) if head == "node" else pytest.param(name, head, marks=pytest.mark.slow)
                                       for name in GRAPHGPS for head in ("graph", "node")])
def test_padding_nodes_change_nothing_in_the_model(name, head):
  """The whole graph model (edge encoding on, graph token with the graph head), padded to 8 and to 24 nodes, with
  junk in the padding."""
  model = graph_model(name, head=head, graph_token=head == "graph", num_classes=3)
  model.eval()
  _, example = random_graph_example(1, num_nodes=7)  # unique eigenpairs, for LapPE
  small, large = batch_of([example], 8, 16), batch_of([example], 24, 40)
  large["inputs"] = large["inputs"].at[:, 7:].set(jnp.asarray(np.random.default_rng(1).integers(0, 5, (1, 17, 2))))
  a, b = np.asarray(run(model, small)), np.asarray(run(model, large))
  if head == "node":
    a, b = a[:, :7], b[:, :7]
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # 12 tiny runs: ≈ 7 min on 2 shared cores (each encoding trains in the default suite through
# test_train_randomness.py's graph-family test)
def test_graph_urpe_runs_the_graphgps_encodings_when_asked(tmp_path, data_dir, monkeypatch):
  """`launch.reproduce graph_urpe --tiny --encodings=...`: every run trained, a column per encoding."""
  monkeypatch.setenv("ZOO_DATA_DIR", data_dir)
  args = ["graph_urpe", "--tiny", f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}"]
  assert cli(*args, "--encodings=spd,rwse,lappe,rrwp") == 0
  rows, _ = check_outputs(tmp_path / "out", "tiny", "graph_urpe", Options(encodings=("spd", *GRAPHGPS)))
  assert {r["encoding"] for r in rows} == {"spd", *GRAPHGPS}
  table = (tmp_path / "out" / "tiny.md").read_text()
  assert "| task | metric | spd | rwse | lappe | rrwp |" in table and "| ZINC-subset (paper) | MAE | 0.122 | — |" in table
  assert "GRIT (RRWP; Ma et al. 2023) 0.059" in table


@pytest.mark.parametrize("variant", ["quick", "full"])
def test_graph_urpe_rows_of_the_graphgps_encodings_are_valid_configs_and_columns(variant):
  """Without training: `--encodings=rwse,lappe,rrwp` runs parse, and rows of them make a column each (an encoding
  missing on a task shows —)."""
  from zoo.train.options import parse_experiment  # noqa: PLC0415

  experiment = experiments.get("graph_urpe")
  runs = experiment.runs(variant, Options(encodings=GRAPHGPS))
  assert [r.config["model"]["positional"]["name"] for r in runs] == list(GRAPHGPS) * 3
  for r in runs:
    parse_experiment(r.config)
  rows = [{**r.labels, "metric": "mae", "value": 0.5, "steps": 300} for r in runs[:-1]]  # no rrwp on the last task
  table = experiment.markdown(rows, variant)
  assert "| task | metric | rwse | lappe | rrwp |\n|---|---|---|---|---|\n" in table
  assert "| graph_neighbourhood | mae | 0.500 | 0.500 | — |" in table and "GraphGPS (MPNN + attention, RWSE" in table


def test_graph_urpe_refuses_an_encoding_that_is_not_a_graph_encoding(capsys):
  assert cli("graph_urpe", "--tiny", "--encodings=rope") == 2
  err = capsys.readouterr().err
  assert err.startswith("error: unknown graph encoding 'rope'; valid choices: ") and "rrwp" in err
  assert len(err.splitlines()) == 1
