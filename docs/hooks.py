"""mkdocs hook: the pages show results/'s committed figures without a copy in docs/.

A page links a figure as `../results/<experiment>/<variant>.png`, which is right on GitHub and in a checkout but
outside mkdocs' docs/; the site gets each figure as results/... and the links are read from there."""

import pathlib

from mkdocs.structure.files import File

REPO = pathlib.Path(__file__).resolve().parent.parent


def on_files(files, config):
  for figure in sorted((REPO / "results").rglob("*.png")):
    files.append(File(figure.relative_to(REPO).as_posix(), str(REPO), config["site_dir"], config["use_directory_urls"]))
  return files


def on_page_markdown(markdown, page, config, files):
  """Every page sits at the top of docs/, so `../results/` there is `results/` among the site's files."""
  return markdown.replace("](../results/", "](results/")
