"""README.md and docs/ stay true to the repository: the site builds with no broken link, every Python block runs as a
user pastes it, and every command, config file and path they name exists.

A ```python block that cannot run offline in a test is fenced ```python notest instead (none today).
"""

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

from zoo import positional

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TEXTS = {page.relative_to(REPO).as_posix(): page.read_text() for page in PAGES}
BLOCKS = [(name, index, block) for name, text in TEXTS.items()
          for index, block in enumerate(re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M))]
TOP_LEVEL = ("zoo/", "launch/", "configs/", "tests/", "checkpoints/", "results/", "docs/", ".ci/")


def test_the_site_builds_strictly(tmp_path):
  """`mkdocs build --strict`: a broken link or anchor, or a page missing from the nav, is an error."""
  command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
             "--site-dir", str(tmp_path / "site")]
  result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "site" / "encodings" / "index.html").exists()


def test_the_readme_fits_on_a_page():
  assert len(TEXTS["README.md"].splitlines()) <= 300


def test_the_readme_has_a_python_block():
  assert any(name == "README.md" for name, _, _ in BLOCKS)


@pytest.mark.parametrize("name,index,block", BLOCKS, ids=[f"{name}:{index}" for name, index, _ in BLOCKS])
def test_python_block_runs(name, index, block, monkeypatch):
  monkeypatch.chdir(REPO)  # blocks name repository paths (tests/fixtures/...) as a user in a checkout would
  exec(compile(block, f"{name} block {index}", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("name", TEXTS)
def test_named_modules_and_configs_exist(name):
  text = TEXTS[name]
  for module in re.findall(r"python -m (launch(?:\.\w+)+)", text):
    path = REPO / module.replace(".", "/")
    assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), f"{name}: no module {module}"
  for config in re.findall(r"\bconfigs/\w+\.py", text):
    assert (REPO / config).is_file(), f"{name}: no file {config}"


@pytest.mark.parametrize("name", TEXTS)
def test_paths_in_backticks_exist(name):
  """`zoo/...`, `launch/...` and the like: repository paths (a `:variant` suffix dropped); templates with <...> and
  globs are not paths."""
  for quoted in re.findall(r"`([^`\s]+)`", TEXTS[name]):
    path = quoted.split(":", 1)[0]
    if path.startswith(TOP_LEVEL) and not re.search(r"[<>*{}…]", path):
      assert (REPO / path).exists(), f"{name}: `{quoted}` does not exist"


@pytest.mark.parametrize("name", TEXTS)
def test_links_stay_inside_the_repository_and_exist(name):
  page = REPO / name
  for target in re.findall(r"\]\(([^)\s]+)\)", TEXTS[name]):
    if target.startswith(("http://", "https://", "#")):
      continue
    path = (page.parent / target.split("#", 1)[0]).resolve()
    assert path.is_relative_to(REPO.resolve()), f"{name}: {target} leads outside the repository"
    assert path.exists(), f"{name}: {target} does not exist"


def test_the_encodings_page_lists_every_registered_encoding():
  listed = re.findall(r"^\| `(\w+)` \|", TEXTS["docs/encodings.md"], flags=re.M)
  assert sorted(listed) == list(positional.available())
