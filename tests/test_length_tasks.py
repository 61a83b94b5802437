"""Length-generalisation tasks (Delétang et al. 2023; passkey retrieval) against references written here from the
paper's definitions, and `launch.extrapolate --task=...`: train short, test long, resume."""

import numpy as np
import pytest

from launch import extrapolate
from test_reproduce import cli
from zoo import pretrained
from zoo.data import prepare, tasks
from zoo.data.tasks.algorithmic import bucket_sort, duplicate_string, missing_duplicate, parity_check, reverse_string
from zoo.data.tasks.passkey import passkey
from zoo.experiments.length_tasks import SETUPS, probe_batch
from zoo.experiments.sweep import read_rows

LENGTH_TASKS = ("parity_check", "reverse_string", "duplicate_string", "bucket_sort", "missing_duplicate", "passkey")


def reference(name: str, symbols: list[int]) -> list[int]:
  """The task's output for input symbols, from the paper's definition, one symbol at a time."""
  if name == "parity_check":  # 1 for an odd number of 1s
    ones = 0
    for s in symbols:
      ones += s == 1
    return [ones % 2]
  if name == "reverse_string":
    return [symbols[len(symbols) - 1 - i] for i in range(len(symbols))]
  if name == "duplicate_string":
    return symbols + symbols
  if name == "bucket_sort":  # count each symbol, then write the counts out in order
    return [s for s in range(max(symbols) + 1) for _ in range(symbols.count(s))]
  if name == "missing_duplicate":  # the copy's symbol at the placeholder's place
    half = len(symbols) // 2
    hidden = symbols.index(2)
    return [symbols[hidden % half + (half if hidden < half else 0)]]
  raise ValueError(name)


@pytest.mark.parametrize(("function", "symbols", "expected"), [
    (parity_check, "1010100", "1"), (parity_check, "01111", "0"), (parity_check, "0", "0"),  # the paper's examples
    (reverse_string, "0111", "1110"), (reverse_string, "1", "1"),
    (duplicate_string, "101", "101101"), (duplicate_string, "111111", "111111111111"),
    (bucket_sort, "10204112", "00111224"), (bucket_sort, "1110001", "0001111"),
    (missing_duplicate, "01100210", "1"), (missing_duplicate, "1011213", "0"), (missing_duplicate, "20", "0"),
])
def test_algorithmic_targets_of_hand_written_inputs(function, symbols, expected):
  got = function(np.array([int(c) for c in symbols]))
  assert "".join(map(str, got.tolist())) == expected
  assert reference(function.__name__, [int(c) for c in symbols]) == [int(c) for c in expected]


def test_passkey_sits_at_its_depth_in_the_filler_cycle():
  # n = 10, k = 3: 6 filler tokens, the key segment at round(0.5 · 6) = 3; filler tokens from 13, cycle of 3
  expected = [13, 14, 15, 11, 8, 2, 5, 13, 14, 15]
  np.testing.assert_array_equal(passkey(np.array([7, 1, 4]), 10, 0.5, 3), expected)
  np.testing.assert_array_equal(passkey(np.array([7, 1, 4]), 10, 0.0, 3)[:4], [11, 8, 2, 5])
  np.testing.assert_array_equal(passkey(np.array([7, 1, 4]), 10, 1.0, 3)[-4:], [11, 8, 2, 5])


@pytest.mark.parametrize("name", LENGTH_TASKS)
def test_samples_hold_the_reference_output_on_their_answer_tokens(name):
  task = tasks.build(name, {})
  alphabet = task.vocab_size - 2  # input symbols are tokens 1..alphabet, the answer token alphabet + 1
  for n in (task.shortest, 7, 40, 123):
    example = task.sample(np.random.default_rng(n), n)
    tokens, targets, weights = example["inputs"], example["targets"], example["weights"]
    m = task.output_length(n)
    assert tokens.shape == targets.shape == weights.shape == (task.total_length(n),) == (n + m,)
    np.testing.assert_array_equal(weights, [0] * n + [1] * m)  # only the answer tokens are scored
    if name == "passkey":
      key = int(np.flatnonzero(tokens == 11)[0])
      assert np.all(tokens[n:] == 12)
      np.testing.assert_array_equal(targets[n:], tokens[key + 1:key + 1 + m] - 1)  # the digits after KEY
      assert np.all((tokens[:key] >= 13)) and np.all(tokens[key + 1 + m:n] >= 13)  # filler around, no digits
    else:
      assert np.all(tokens[n:] == alphabet + 1) and np.all((tokens[:n] >= 1) & (tokens[:n] <= alphabet))
      assert targets[n:].tolist() == reference(name, (tokens[:n] - 1).tolist())


def test_passkey_tests_each_depth_of_its_grid():
  task = tasks.build("passkey", {"digits": 4})
  for depth in task.depths:
    for n in (9, 60, 500):
      example = task.sample(np.random.default_rng(0), n, depth)
      assert int(np.flatnonzero(example["inputs"] == 11)[0]) == round(depth * (n - 5))


def training_lengths(name: str, data_dir: str, **options) -> tuple[list[int], list[np.ndarray]]:
  task = tasks.build(name, {"max_length": 12, "num_train": 64, "num_eval": 8, **options})
  source = prepare(task, data_dir).as_data_source(split="train")
  inputs = [source[i]["inputs"] for i in range(len(source))]
  answer = task.vocab_size - 1 if name != "passkey" else 12
  return [int(np.sum(t != answer)) for t in inputs], inputs


@pytest.mark.parametrize("name", ["duplicate_string", "missing_duplicate", "passkey"])
def test_training_lengths_are_uniform_in_the_range_and_the_data_a_function_of_the_seed(name, data_dir, tmp_path):
  lengths, inputs = training_lengths(name, data_dir)
  shortest = tasks.build(name, {}).options.min_length
  assert min(lengths) == shortest and max(lengths) == 12 and len(set(lengths)) >= 12 - shortest  # most lengths drawn
  again = training_lengths(name, str(tmp_path / "elsewhere"))[1]
  assert all(np.array_equal(a, b) for a, b in zip(inputs, again))  # written again elsewhere: the same examples
  other = training_lengths(name, data_dir, seed=1)[1]
  assert not all(np.array_equal(a, b) for a, b in zip(inputs, other))


def test_bad_task_or_core_is_one_line(capsys):
  assert cli("--task=bogus", "--tiny", main=extrapolate.main) == 2
  assert capsys.readouterr().err.startswith("error: unknown task 'bogus'; valid choices: ")
  assert cli("--task=parity_check", "--attention_impl=linear", "--encodings=alibi", main=extrapolate.main) == 2
  assert capsys.readouterr().err.startswith("error: positional encoding 'alibi' uses the logit_bias hook")
  assert cli("--task=parity_check", "--encodings=rope+shuffled", main=extrapolate.main) == 2
  assert capsys.readouterr().err.startswith("error: unknown encoding 'rope+shuffled'")
  assert cli("extrapolate", "--attention_impl=linear") == 2  # launch.reproduce: the byte LM takes no core
  assert capsys.readouterr().err.startswith("error: --attention_impl applies to length_tasks only")


@pytest.mark.slow  # launch.extrapolate's default journey is test_extrapolate.py's tiny run
def test_a_tiny_parity_run_trains_tests_by_length_and_resumes(tmp_path):
  """The shared loop trains, the trained model is tested at every length and bucketed into the table; the test
  batches' targets are the reference's and the trained model scores them as the row says; a rerun trains nothing."""
  args = ["--task=parity_check", "--tiny", "--encodings=rope", f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path}"]
  assert cli(*args, main=extrapolate.main) == 0
  [row] = read_rows(tmp_path / "tiny.jsonl")
  setup = SETUPS["tiny"]
  assert row["eval_lengths"] == list(setup.eval_lengths) and len(row["accuracy"]) == len(setup.eval_lengths)
  model, config = pretrained.load(str(tmp_path / "runs" / "rope"))
  task = tasks.build("parity_check", {k: v for k, v in config.task.to_dict().items() if k != "name"})
  for n, reported in zip(setup.eval_lengths, row["accuracy"]):
    batch = probe_batch(task, n, setup.eval_examples, config.task.seed)
    truth = [reference("parity_check", (t[:n] - 1).tolist())[0] for t in batch["inputs"]]
    assert batch["targets"][:, -1].tolist() == truth
    assert np.mean(np.asarray(model(batch["inputs"])).argmax(-1)[:, -1] == truth) == pytest.approx(reported)
  table = (tmp_path / "tiny.md").read_text()
  assert "| encoding | ≤ 8 (train) | 9–16 |" in table and table.count("| rope |") == 1
  assert (tmp_path / "tiny.png").read_bytes().startswith(b"\x89PNG")
  result = tmp_path / "runs" / "rope" / "result.json"
  stamp = result.stat().st_mtime_ns
  assert cli(*args, main=extrapolate.main) == 0
  assert result.stat().st_mtime_ns == stamp and read_rows(tmp_path / "tiny.jsonl") == [row]


@pytest.mark.slow
def test_linear_attention_with_spe_and_randomized_positions_on_passkey(tmp_path):
  args = ["--task=passkey", "--tiny", "--attention_impl=linear", "--encodings=spe_sine,rope+randomized",
          f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path}"]
  assert cli(*args, main=extrapolate.main) == 0
  rows = read_rows(tmp_path / "tiny.jsonl")
  assert [r["encoding"] for r in rows] == ["spe_sine", "rope+randomized"]
  assert all(r["attention_impl"] == "linear" and len(r["accuracy_by_depth"]) == 5 for r in rows)
  assert "By depth of the key" in (tmp_path / "tiny.md").read_text()
