"""Tiny data files in the real on-disk formats the loader tasks read; each writer returns the task options for them."""

import pathlib
import pickle

import numpy as np

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


def imdb(root: pathlib.Path) -> dict:
  """An aclImdb tree: 3 reviews per polarity and split; review k of polarity p is `p` bytes * (5 + k)."""
  for split in ("train", "test"):
    for polarity in ("neg", "pos"):
      folder = root / "aclImdb" / split / polarity
      folder.mkdir(parents=True)
      for k in range(3):
        (folder / f"{k}_{7 + k}.txt").write_bytes(polarity.encode()[:1] * (5 + 10 * k) + b" \xc3\xa9<br />")
  return {"folder": str(root / "aclImdb")}


def aan(root: pathlib.Path) -> dict:
  """LRA's AAN TSV files: label, two paper ids and their texts per line (8 training and 8 evaluation pairs)."""
  root.mkdir(parents=True, exist_ok=True)
  for name in ("train", "eval"):
    lines = [f"{k % 2}.0\tW{k:02d}-1\tW{k:02d}-2\tfirst paper {k} " + "x" * k + f"\tsecond {k}" for k in range(8)]
    (root / f"new_aan_pairs.{name}.tsv").write_text("\n".join(lines) + "\n")
  return {"folder": str(root)}


def cifar10(root: pathlib.Path, images_per_batch: int = 4) -> dict:
  """cifar-10-batches-py: five training batches and a test batch of random images, pickled as CIFAR-10 ships them."""
  folder = root / "cifar-10-batches-py"
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
    batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, images_per_batch).tolist(),
             b"data": rng.integers(0, 256, (images_per_batch, 3072), dtype=np.uint8),
             b"filenames": [f"img{k}.png".encode() for k in range(images_per_batch)]}
    with open(folder / name, "wb") as f:
      pickle.dump(batch, f)
  return {"folder": str(folder)}


def wikitext103(root: pathlib.Path) -> dict:
  """wiki.{train,valid,test}.tokens: a heading, paragraphs of words and blank lines, as WikiText ships them."""
  root.mkdir(parents=True, exist_ok=True)
  words = "the cat sat on a mat and the dog saw it".split()
  for name, paragraphs in (("train", 12), ("valid", 8), ("test", 2)):
    lines = [" = Valkyria Chronicles = ", ""]
    for k in range(paragraphs):
      lines += [" " + " ".join(words[(k + j) % len(words)] for j in range(40)) + (" zebra" if name != "train" else ""),
                ""]
    (root / f"wiki.{name}.tokens").write_text("\n".join(lines) + "\n")
  return {"folder": str(root)}


def enwik8(root: pathlib.Path) -> dict:
  """A raw enwik8-like file (UTF-8 XML bytes) of 4000 bytes; the last 2 × 320 bytes are validation and test."""
  root.mkdir(parents=True, exist_ok=True)
  text = ("<page><title>Åland</title><text>'''Anarchism''' is a [[political philosophy]]</text></page>\n" * 50)
  (root / "enwik8").write_bytes(text.encode()[:4000])
  return {"folder": str(root), "eval_bytes": 320}


def text8(root: pathlib.Path) -> dict:
  """A raw text8-like file: 4000 characters of lower-case words and single spaces, no newline."""
  root.mkdir(parents=True, exist_ok=True)
  (root / "text8").write_bytes((b" anarchism originated as a term of abuse first used against early" * 70)[:4000])
  return {"folder": str(root), "eval_bytes": 320}


MOLECULES = [("CCO", -0.31), ("c1ccccc1O", 1.46), ("CC(=O)Nc1ccc(O)cc1", 0.46), ("C[N+](C)(C)C", -2.1),
             ("O=C(O)c1ccccc1", 1.87), ("C1CCNCC1", 0.84), ("N#Cc1ccccc1", 1.56), ("OCC(O)CO", -1.76)]


def molecules(root: pathlib.Path) -> dict:
  """ZINC / PCQM4M-style CSVs (`idx,smiles,target`) of a few small molecules."""
  root.mkdir(parents=True, exist_ok=True)
  rows = "".join(f"{i},{smiles},{target}\n" for i, (smiles, target) in enumerate(MOLECULES))
  (root / "train.csv").write_text("idx,smiles,target\n" + rows * 2)
  (root / "valid.csv").write_text("idx,smiles,target\n" + rows)
  return {"train_file": str(root / "train.csv"), "validation_file": str(root / "valid.csv")}
