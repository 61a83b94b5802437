"""The README's Python code blocks run as written, in one namespace per block (as a user pastes them)."""

import re

import pytest
from conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_the_readme_has_python_blocks():
  assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
  exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})
