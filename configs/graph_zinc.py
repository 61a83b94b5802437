r"""Graphormer (or Graphormer + URPE) on ZINC-subset regression, from SMILES + target CSV files.

  python -m launch.train --config=configs/graph_zinc.py:spd --workdir=/tmp/zoo/zinc \
      --config.task.train_file=zinc/train.csv --config.task.validation_file=zinc/val.csv
  python -m launch.train --config=configs/graph_zinc.py:spd_urpe --workdir=/tmp/zoo/zinc_urpe \
      --config.task.train_file=zinc/train.csv --config.task.validation_file=zinc/val.csv

The CSVs need a `smiles` and a `target` column (ZINC's constrained solubility; for PCQM4M's `idx,smiles,homolumogap`
set --config.task.target_column=homolumogap and --config.task.max_nodes=51). Install RDKit with
`pip install -e ".[chem]"`. The model is the URPE paper's Graphormer-slim setting (12 layers, d_model 80, 8 heads,
≈ 0.5M parameters; paper test MAE 0.122 → 0.086 with URPE); zoo trains it with MSE and reports MAE, where the
Graphormer code trains on L1.
"""

from configs.base import parse_arg
from configs.graph_distance import graph_config


def get_config(arg: str | None = None):
  config = graph_config(dict(name="molecules", train_file="", validation_file="", smiles_column="smiles",
                             target_column="target", max_nodes=40, max_hops=5), arg, smoke_task={})
  config.optimizer.update(learning_rate=2e-4, schedule="linear", weight_decay=0.01)
  if "smoke" not in parse_arg(arg, default="spd")[1]:
    config.model.update(num_layers=12, d_model=80, attention=dict(num_heads=8), mlp=dict(dim=80))
    config.optimizer.warmup_steps = 40_000
    config.train.update(steps=400_000, batch_size=256, log_every=500, checkpoint_every=10_000)
  return config
