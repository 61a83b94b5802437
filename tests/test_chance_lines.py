"""The chance lines on the committed figures are the data's own: each experiment's majority-class share, recounted
here from the task generators' validation splits (the runs' own task options) — ListOps' label by evaluating its
trees, Pathfinder's from its images, the graph tasks' from their examples."""

import collections

import numpy as np
import pytest

from zoo import experiments
from zoo.data import tasks
from zoo.data.tasks import listops
from zoo.experiments import graph, spe


def run_task(experiment: str, variant: str, task: str):
  """The task, with the options of `experiment`'s first `variant` run on it."""
  config = next(r.config for r in experiments.get(experiment).runs(variant)
                if r.config["task"]["name"] == task)["task"]
  return tasks.build(task, {k: v for k, v in config.items() if k != "name"})


def majority(labels) -> float:
  labels = list(labels)
  return collections.Counter(labels).most_common(1)[0][1] / len(labels)


@pytest.mark.parametrize("variant", ["quick", pytest.param("full", marks=pytest.mark.slow)])  # full: 11 s
def test_spe_lra_majority_lines(variant):
  o = run_task("spe_lra", variant, "listops").options
  trees = listops.distinct_trees(o.seed, "validation", o.num_eval, set(), min_length=o.min_length,
                                 max_length=o.max_length, max_depth=o.max_depth, max_args=o.max_args)
  shares = {"listops": majority(listops.evaluate([listops.VOCAB[t] for t in ids]) for ids in trees)}
  pathfinder = run_task("spe_lra", variant, "pathfinder")
  shares["pathfinder"] = majority(label for _, label in pathfinder.images("validation", pathfinder.options.num_eval))
  assert {task: round(100 * share, 1) for task, share in shares.items()} == spe.MAJORITY[variant]


@pytest.mark.parametrize("variant", ["quick", "full"])
def test_spe_listops_majority_line(variant):
  o = run_task("spe_listops", variant, "listops").options
  trees = listops.distinct_trees(o.seed, "validation", o.num_eval, set(), min_length=o.min_length,
                                 max_length=o.max_length, max_depth=o.max_depth, max_args=o.max_args)
  labels = [listops.evaluate([listops.VOCAB[t] for t in ids]) for ids in trees]
  assert round(100 * majority(labels), 1) == spe.CONTROL_MAJORITY[variant]


def test_graph_majority_lines_and_the_variants_share_their_data():
  for task in graph.MAJORITY:
    quick, full = (run_task("graph_urpe", variant, task) for variant in ("quick", "full"))
    assert quick.options == full.options
    labels = np.concatenate([np.atleast_1d(example["targets"]) for _, example in full.examples("validation")])
    assert round(majority(labels.tolist()), 3) == graph.MAJORITY[task], task
