"""Tiny data files in the real on-disk formats the loader tasks read; each writer returns the task options for them."""

import pathlib

CONLL_TRAIN = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""
CONLL_VALID = """-DOCSTART- -X- -X- O

CRICKET NNP B-NP O
- : O O
LEICESTERSHIRE NNP B-NP B-ORG
TAKE NNP I-NP O
OVER IN B-PP O
AT NNP B-NP O
TOP NNP I-NP O
AFTER NNP I-NP O
INNINGS NNP I-NP O
VICTORY NN I-NP O
. . O O
"""


def conll2003(root: pathlib.Path) -> dict:
  root.mkdir(parents=True, exist_ok=True)
  (root / "train.txt").write_text(CONLL_TRAIN * 4)  # 12 sentences
  (root / "valid.txt").write_text(CONLL_VALID * 8)  # 8 sentences of 11 words
  return {"conll_dir": str(root)}
