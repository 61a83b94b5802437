"""`python -m launch.reproduce EXPERIMENT`: every experiment end to end at its tiny size (urpe_pi in the default suite,
the others slow), each writing its JSONL, its table beside the paper's numbers and its figures; reruns resume; every
run of the quick and full variants is a valid config; the committed tables under results/ are what the experiments'
modules make of the committed JSONL. Training the quick variants is not a test: it is how results/ is made (the
commands in docs/results.md; memorization's and sparse_memory's alone take 14 and 18 min on 2 cores)."""

import json
import statistics
import pathlib

import pytest
from absl import flags

import task_files
from launch import reproduce, reproduce_urpe
from launch.cli import parse_flags
from configs.length_tasks import TASKS as LENGTH_TASKS
from zoo import experiments, models
from zoo.experiments import Options
from zoo.experiments.base import Run, mean_std, with_seeds
from zoo.experiments.sweep import read_rows

REPO = pathlib.Path(__file__).resolve().parent.parent


def cli(*args: str, main=reproduce.main) -> int:
  """`python -m launch.reproduce ARGS` in this process (so that a test can stand in for the training loop): the
  exit status, 2 for a usage error."""
  flags.FLAGS.unparse_flags()
  try:
    return main(parse_flags(["reproduce", *args]))
  except SystemExit as exit_:
    return exit_.code
  finally:
    flags.FLAGS.unparse_flags()


def test_unknown_experiment_and_misplaced_options_name_the_valid_ones(capsys):
  assert cli("urpe_bogus", "--tiny") == 2
  assert capsys.readouterr().err == ("error: unknown experiment 'urpe_bogus'; valid choices: extrapolate, graph_urpe, "
                                     "length_tasks, memorization, sparse_memory, spe_listops, spe_lra, urpe_etp, "
                                     "urpe_pi\n")
  assert cli("sparse_memory", "--encodings=rpe") == 2
  assert "--encodings applies to extrapolate, graph_urpe, length_tasks, urpe_etp, urpe_pi only" in capsys.readouterr().err
  assert cli("urpe_pi", "--encodings=rpe,fourier") == 2
  assert "unknown encoding 'fourier'; valid choices: alibi," in capsys.readouterr().err
  assert cli("urpe_pi", "--zinc=/data/zinc") == 2
  assert "--zinc applies to graph_urpe only" in capsys.readouterr().err
  assert cli("memorization", "--steps=3") == 2
  assert "--steps applies to extrapolate, length_tasks, sparse_memory, urpe_etp, urpe_pi only" in capsys.readouterr().err
  assert cli("urpe_pi", "--quick", "--tiny") == 2
  assert capsys.readouterr().err == "error: give at most one of --quick and --tiny\n"
  assert cli("--tiny") == 2
  assert capsys.readouterr().err.startswith("error: give one experiment; valid choices: extrapolate, graph_urpe")


def test_committed_tables_are_what_the_experiments_make_of_the_committed_jsonl():
  """Numbers unchanged, proven without training: every results/<experiment>[/<task>...]/<variant>.md rebuilt from
  the JSONL beside it by the experiment's module, byte for byte."""
  tables = sorted((REPO / "results").rglob("*.md"))
  assert len(tables) >= 13
  for table in tables:
    rows = read_rows(table.with_suffix(".jsonl"))
    experiment = table.relative_to(REPO / "results").parts[0]
    assert experiments.get(experiment).markdown(rows, table.stem) == table.read_text(), table


def test_a_zinc_folder_without_its_csvs_is_refused_with_one_line_naming_the_file(tmp_path, capsys):
  (tmp_path / "train.csv").write_text("smiles,target\nCCO,0.5\n")
  assert cli("graph_urpe", "--tiny", f"--zinc={tmp_path}") == 2
  assert capsys.readouterr().err.strip() == (f"error: --zinc={tmp_path} holds no valid.csv; it needs train.csv and "
                                             "valid.csv (columns smiles, target)")


def test_zinc_adds_graphormer_slim_runs_on_its_csvs_for_both_encodings(tmp_path):
  files = task_files.molecules(tmp_path)
  runs = experiments.get("graph_urpe").runs("full", Options(zinc=str(tmp_path)))
  zinc = [run for run in runs if run.labels["task"] == "zinc"]
  assert [run.name for run in zinc] == ["zinc_spd", "zinc_spd_urpe"] and len(runs) == 8
  for run in zinc:
    assert run.config["task"]["train_file"] == files["train_file"]
    assert run.config["task"]["validation_file"] == files["validation_file"]
    assert run.config["model"]["num_layers"] == 12 and run.config["model"]["d_model"] == 80  # the paper's model
    assert run.config["train"]["steps"] == 1000 and run.config["optimizer"]["warmup_steps"] == 100
    assert run.config["train"]["batch_size"] == 128


def test_urpe_experiments_cover_every_encoding_the_encoder_accepts():
  from zoo.experiments.urpe import encoder_encodings  # noqa: PLC0415

  runs = experiments.get("urpe_pi").runs("quick")
  names = {run.labels["encoding"] for run in runs}
  assert {"none", "rpe", "urpe", "rope", "alibi", "t5_bias", "sinusoidal", "spe_sine", "memory_rpe"} <= names
  assert len(names) == len(encoder_encodings())
  for run in runs:  # each run's model is one the encoder builds (no causal-only encoding: FoX)
    models.parse_config("encoder", run.config["model"])


def test_reproduce_urpe_is_the_urpe_pi_experiment_for_rpe_and_urpe(monkeypatch):
  """Its defaults pick the rpe and urpe runs of urpe_pi, written outside results/; a flag given wins."""
  seen = []
  monkeypatch.setattr(reproduce, "main", lambda argv: seen.append(
      (argv[1:], flags.FLAGS.encodings, flags.FLAGS.workdir, flags.FLAGS.out, flags.FLAGS.quick)) or 0)
  before = {name: flags.FLAGS[name].default for name in reproduce_urpe.DEFAULTS}
  try:
    reproduce_urpe.use_defaults()
    assert cli(main=reproduce_urpe.main) == 0
    assert cli("--quick", "--workdir=/tmp/w", main=reproduce_urpe.main) == 0
  finally:
    for name, value in before.items():
      flags.FLAGS.set_default(name, value)
  assert seen == [(["urpe_pi"], ["rpe", "urpe"], "/tmp/zoo/reproduce_urpe", "/tmp/zoo/reproduce_urpe", False),
                  (["urpe_pi"], ["rpe", "urpe"], "/tmp/w", "/tmp/zoo/reproduce_urpe", True)]


@pytest.mark.parametrize("variant", ["quick", "full"])
def test_every_run_of_the_quick_and_full_variants_is_a_valid_experiment_config(variant, tmp_path):
  """The default suite trains only the tiny variant; the sizes the others set must still parse (an option one row
  does not accept, such as FAVOR+'s num_features on a softmax row, fails here instead of hours into a sweep)."""
  from zoo.train.options import parse_experiment  # noqa: PLC0415

  task_files.molecules(tmp_path)
  length_tasks = [Options(task=task, attention_impl=impl) for task in LENGTH_TASKS for impl in ("xla", "linear")]
  for name in experiments.available():
    experiment = experiments.get(name)
    for run in [r for options in (length_tasks if name == "length_tasks" else [Options(zinc=str(tmp_path))])
                for r in experiment.runs(variant, options)]:
      try:
        parse_experiment(run.config)
      except ValueError as error:
        pytest.fail(f"{name} --{variant}, run {run.name}: {error}")


def check_outputs(out, variant, experiment, options=Options()):
  rows = read_rows(out / f"{variant}.jsonl")
  expected = with_seeds(experiments.get(experiment).runs(variant, options), options.seeds)
  assert [r["run"] for r in rows] == [run.name for run in expected]
  assert all(r["experiment"] == experiment and r["variant"] == variant for r in rows)
  table = (out / f"{variant}.md").read_text()
  assert "Paper" in table and table.count("\n|") >= 3
  figures = sorted(out.glob(f"{variant}*.png"))
  assert figures and all(f.read_bytes().startswith(b"\x89PNG") for f in figures)
  return rows, figures


# The default suite walks the command once, with the main job's experiment (urpe_pi); every other experiment's tiny
# grid runs in the slow suite (spe_lra's 14 runs ≈ 4 min on 2 cores, memorization ≈ 1 min, sparse_memory ≈ 1 min
# with its exact errors).
# extrapolate and length_tasks (which takes a --task) have their own journeys: test_extrapolate.py, test_length_tasks.py.
SLOW_TINY = tuple(e for e in experiments.available() if e != "urpe_pi")
OWN_JOURNEYS = ("extrapolate", "length_tasks")


@pytest.mark.parametrize("experiment", [pytest.param(e, marks=pytest.mark.slow if e in SLOW_TINY else ())
                                        for e in experiments.available() if e not in OWN_JOURNEYS])
def test_tiny_run_writes_table_and_figures_and_a_rerun_resumes(experiment, tmp_path, data_dir, monkeypatch):
  monkeypatch.setenv("ZOO_DATA_DIR", data_dir)
  args = [experiment, "--tiny", f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}"]
  options = Options()
  if experiment == "graph_urpe":  # with ZINC's rows, from CSVs in its release format; one encoding, two seeds
    task_files.molecules(tmp_path / "zinc")
    options = Options(zinc=str(tmp_path / "zinc"), encodings=("spd",), seeds=2)
    args += [f"--zinc={options.zinc}", "--encodings=spd", "--seeds=2"]
  if experiment == "sparse_memory":  # two seeds: the table's mean ± std beside the exact errors
    options = Options(seeds=2)
    args += ["--seeds=2"]
  assert cli(*args) == 0
  rows, figures = check_outputs(tmp_path / "out", "tiny", experiment, options)
  if experiment == "graph_urpe":
    table = (tmp_path / "out" / "tiny.md").read_text()
    seeded = [line for line in table.splitlines() if line.endswith(" (2) |")]  # mean ± std (seeds) per task
    assert len(seeded) == 4 and all(" ± " in line for line in seeded) and "| zinc | mae |" in table
    assert {r["seed"] for r in rows} == {0, 1} and {r["run"] for r in rows} >= {"zinc_spd", "zinc_spd_seed1"}
  if experiment.startswith("urpe"):
    assert {f.name for f in figures} == {"tiny.png", "tiny_urpe_tables.png"}
    urpe = next(r for r in rows if r["encoding"] == "urpe")
    assert len(urpe["b"]) == len(urpe["c"]) == 2  # [heads, lags] each
  if experiment == "sparse_memory":  # exact ≤ the trained decays with the readout solved ≤ the trained model
    for row in rows:
      assert len(row["decays"]) == row["heads"] and all(p > 0 for p in row["decays"])
      assert row["exact"] <= row["at_trained_decays"] * (1 + 1e-9) + 1e-12, row
      assert row["at_trained_decays"] < row["mse"], row  # 4 steps: far from the solved readout
    lines = [line for line in (tmp_path / "out" / "tiny.md").read_text().splitlines()
             if line.startswith(("| heavy_tailed", "| light_tailed"))]
    assert sum(line.count(" / ") for line in lines) == len(rows)  # trained / at trained decays / exact, per H
    assert sum(line.count(" (2) |") for line in lines) == len(rows) // 2  # mean ± std over 2 seeds, per H
  results = sorted((tmp_path / "runs").glob("*/result.json"))
  stamps = [p.stat().st_mtime_ns for p in results]
  assert cli(*args) == 0  # every run finished: nothing is trained again
  assert [p.stat().st_mtime_ns for p in results] == stamps
  assert [json.loads(line) for line in (tmp_path / "out" / "tiny.jsonl").read_text().splitlines()] == rows


def test_a_run_stopped_by_sigterm_stops_the_sweep_with_one_line_and_writes_no_table(tmp_path, monkeypatch, capsys):
  from zoo.train import loop  # noqa: PLC0415

  trained = []

  def preempted(config, workdir):  # what train_and_evaluate returns after a SIGTERM (loop.stopped_by_preemption)
    trained.append(workdir)
    return {"step": 7, "stopped": "preempted", "workdir": workdir}

  monkeypatch.setattr(loop, "train_and_evaluate", preempted)
  assert cli("urpe_pi", "--tiny", f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}") == 1
  err = capsys.readouterr().err.strip()
  assert err == (f"stopped: run pi_rpe preempted at step 7; the same command resumes the sweep from its checkpoint in "
                 f"{tmp_path / 'runs' / 'pi_rpe'}")
  assert len(trained) == 1 and not (tmp_path / "runs" / "pi_rpe" / "result.json").exists()
  assert not list((tmp_path / "out").glob("tiny*"))


def test_a_workdir_of_another_config_is_refused_with_one_line_naming_the_difference(tmp_path, monkeypatch, capsys):
  """Changing an experiment's sizes and rerunning must not relabel the old runs as the new ones."""
  from zoo.train import loop  # noqa: PLC0415

  trained = []
  monkeypatch.setattr(loop, "train_and_evaluate", lambda config, workdir: trained.append(workdir))
  run = experiments.get("urpe_pi").runs("tiny", Options(encodings=("rpe",)))[0]
  workdir = tmp_path / "runs" / run.name
  workdir.mkdir(parents=True)
  config = json.loads(json.dumps(run.config))
  config["train"]["steps"] += 1
  (workdir / "config.json").write_text(json.dumps(config))
  (workdir / "result.json").write_text("{}")
  assert cli("urpe_pi", "--tiny", "--encodings=rpe", f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}") == 2
  steps = run.config["train"]["steps"]
  assert capsys.readouterr().err.strip() == (f"error: {workdir} holds run {run.name} trained with another config: "
                                             f"train.steps ({steps + 1!r} there, {steps!r} now); delete it or pass "
                                             "another --workdir")
  assert not trained and not list((tmp_path / "out").glob("tiny*"))


def test_redraw_makes_the_table_and_figures_from_a_committed_jsonl_without_training(tmp_path, monkeypatch, capsys):
  """--redraw: the committed quick JSONL of sparse_memory becomes its committed table (byte for byte) and a figure,
  with the training loop never called; without a JSONL it is one line naming the file."""
  from zoo.train import loop  # noqa: PLC0415

  monkeypatch.setattr(loop, "train_and_evaluate", lambda config, workdir: pytest.fail("--redraw trained a run"))
  committed = REPO / "results" / "sparse_memory"
  (tmp_path / "quick.jsonl").write_text((committed / "quick.jsonl").read_text())
  assert cli("sparse_memory", "--quick", "--redraw", f"--out={tmp_path}") == 0
  assert (tmp_path / "quick.md").read_text() == (committed / "quick.md").read_text()
  assert (tmp_path / "quick.png").read_bytes().startswith(b"\x89PNG")
  assert cli("sparse_memory", "--redraw", f"--out={tmp_path}") == 2
  assert capsys.readouterr().err == (f"error: --redraw needs {tmp_path / 'full.jsonl'}; run the experiment first or "
                                     "pass its --out\n")


def test_seeds_repeat_each_run_under_its_own_name_and_the_table_gives_mean_and_sample_std():
  runs = [Run("base", {"encoding": "rope"}, {"train": {"seed": 0, "steps": 5}}),
          Run("tuned", {"encoding": "rope+yarn"}, {"train": {"seed": 0}}, init_from="base")]
  seeded = with_seeds(runs, 3)
  assert [(r.name, r.labels["seed"], r.config["train"]["seed"], r.init_from) for r in seeded] == [
      ("base", 0, 0, ""), ("base_seed1", 1, 1, ""), ("base_seed2", 2, 2, ""),
      ("tuned", 0, 0, "base"), ("tuned_seed1", 1, 1, "base_seed1"), ("tuned_seed2", 2, 2, "base_seed2")]
  assert seeded[1].config["train"]["steps"] == 5 and runs[0].config["train"]["seed"] == 0  # copied, not changed
  assert with_seeds(runs, 1)[0].name == "base"
  values = [0.785, 0.914, 0.863]
  assert mean_std(values) == f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (3)"
  assert mean_std([0.5]) == "0.500"
  rows = [{"task": "graph_cycle", "encoding": pe, "seed": seed, "metric": "accuracy", "value": value, "steps": 10}
          for pe, seeds in (("spd", (0.7, 0.8)), ("spd_urpe", (0.9, 0.95))) for seed, value in enumerate(seeds)]
  table = experiments.get("graph_urpe").markdown(rows, "full")
  assert "| graph_cycle | accuracy | 0.750 ± 0.071 (2) | 0.925 ± 0.035 (2) |" in table, table


def test_urpe_figure_over_seeds_draws_one_bar_per_encoding(tmp_path):
  rows = [{"encoding": pe, "seed": seed, "accuracy": acc, "seconds": 1.0, "length": 16, "vocab_size": 10, "steps": 6}
          for pe, accs in (("rpe", (0.2, 0.3)), ("rope", (0.9, 1.0))) for seed, acc in enumerate(accs)]
  experiment = experiments.get("urpe_pi")
  assert "| rope | 0.950 ± 0.071 (2) |" in experiment.markdown(rows, "full")
  [figure] = experiment.plots(rows, tmp_path, "full")
  assert figure.read_bytes().startswith(b"\x89PNG")


def test_experiments_over_seeds_give_mean_and_std_and_draw_them(tmp_path):
  memorization = [{"model": model, "n": n, "seed": seed, "accuracy": acc, "length": 16, "vocab_size": 64,
                   "data_seed": 0, "d_model": 32, "steps": 6}
                  for model, n, accs in (("full rank, softmax", 256, (0.9, 1.0)),
                                         ("full rank, softmax", 1024, (0.6, 0.7)),
                                         ("uniform attention", 256, (0.8, 0.8)), ("uniform attention", 1024, (0.5, 0.6)))
                  for seed, acc in enumerate(accs)]
  listops = [{"task": "listops", "model": model, "seed": seed, "accuracy": acc, "steps": 6}
             for model, accs in (("softmax", (0.36, 0.38, 0.40)), ("Performer", (0.30, 0.30, 0.33)))
             for seed, acc in enumerate(accs)]
  length_tasks = [{"task": "passkey", "encoding": pe, "seed": seed, "attention_impl": "xla", "train_length": 2,
                   "steps": 6, "eval_lengths": [1, 2, 4], "buckets": [2, 4], "chance": 0.1, "seconds": 10.0 + seed,
                   "accuracy": [1.0, acc, acc / 2], "depths": [0.0, 1.0], "accuracy_by_depth": [[0, 0, acc], [0, 0, 1]]}
                  for pe, accs in (("rope", (0.6, 0.8)), ("alibi", (0.4, 0.4))) for seed, acc in enumerate(accs)]
  extrapolate = [{"encoding": pe, "seed": seed, "train_length": 2, "steps": 6, "finetune_steps": 1, "eval_windows": 1,
                  "eval_lengths": [2, 4, 8, 16, 32], "losses": [loss, loss + 0.5, 2.0, 2.0, 2.0], "seconds": 4.0}
                 for pe, losses in (("rope", (1.0, 1.2)), ("alibi", (1.5, 1.5))) for seed, loss in enumerate(losses)]
  sparse_memory = [{"target": target, "phi": phi, "heads": h, "seed": seed, "mse": mse * h, "at_trained_decays": mse,
                    "exact": 0.0, "length": 8, "steps": 6, "eval_sequences": 4}
                   for target in ("heavy_tailed", "light_tailed") for phi in ("log", "lin") for h in (1, 2)
                   for seed, mse in enumerate((1e-4, 3e-4))]
  for name, rows, line in (
      ("sparse_memory", sparse_memory,
       "| heavy_tailed | log | 2.00e-04 ± 1.41e-04 (2) | 4.00e-04 ± 2.83e-04 (2) | 1.00 |"),
      ("sparse_memory", sparse_memory, "| light_tailed | lin | 0.0002 / 0.0002 / 0 | 0.0004 / 0.0002 / 0 |"),
      ("memorization", memorization, "| full rank, softmax | 0.950 ± 0.071 (2) | 0.650 ± 0.071 (2) |"),
      ("spe_listops", listops, "| softmax | 38.0 ± 2.0 (3) |"),
      ("extrapolate", extrapolate, "| rope | 1.100 ± 0.141 (2) | 1.600 ± 0.141 (2) | 2.000 ± 0.000 (2) |"),
      ("length_tasks", length_tasks, "| rope | 0.850 ± 0.071 (2) | 0.350 ± 0.071 (2) | 10 |"),
      ("length_tasks", length_tasks, "| rope | 0.700 ± 0.141 (2) | 1.000 ± 0.000 (2) |")):  # by depth, past L
    experiment = experiments.get(name)
    assert line in experiment.markdown(rows, "quick"), name
    [figure] = experiment.plots(rows, tmp_path, "quick")
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_urpe_experiments_take_another_length_steps_and_seeds(capsys):
  """ETP at lengths the variants do not use (Luo et al.'s claim is about long sequences): the runs' task length and
  steps, each seed a run; another experiment refuses --length in one line."""
  runs = with_seeds(experiments.get("urpe_etp").runs("full", Options(encodings=("rpe", "urpe"), length=64,
                                                                     steps=300)), 2)
  assert [r.name for r in runs] == ["etp_rpe", "etp_rpe_seed1", "etp_urpe", "etp_urpe_seed1"]
  assert {(r.config["task"]["length"], r.config["train"]["steps"], r.config["train"]["checkpoint_every"])
          for r in runs} == {(64, 300, 150)}
  assert cli("memorization", "--tiny", "--length=32") == 2
  assert capsys.readouterr().err.strip() == "error: --length applies to urpe_etp, urpe_pi only"
