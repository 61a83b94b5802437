"""No import runs back up a floor: every zoo / configs / launch module imports only its own package and the floors
below it, as the ```layers block of docs/design.md orders them.

Read from the source with `ast` (nothing is imported), so a lazy import inside a function counts like a module-level
one: it is the same dependency, only paid later.
"""

import ast
import pathlib
import re

REPO = pathlib.Path(__file__).parent.parent
ROOTS = ("zoo", "configs", "launch")


def floors() -> list[tuple[str, ...]]:
  """The layers block of docs/design.md: one tuple of packages per floor, lowest first."""
  text = (REPO / "docs" / "design.md").read_text()
  (block,) = re.findall(r"^```layers\n(.*?)^```", text, re.S | re.M)
  return [tuple(p.strip() for p in line.split(",")) for line in block.splitlines() if line.strip()]


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str, packages: dict[str, int]) -> str | None:
  """The longest layers entry that is `module` or a package above it (zoo.train.loop → zoo.train)."""
  parts = module.split(".")
  for end in range(len(parts), 0, -1):
    if ".".join(parts[:end]) in packages:
      return ".".join(parts[:end])
  return None


def imports(path: pathlib.Path, module: str) -> list[tuple[int, str]]:
  """(line, imported module) of every import of a ROOTS module in `path`, at any depth of the syntax tree."""
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from . import x, from ..y import z
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      # `from zoo import models` imports the module zoo.models; `from zoo.config import check` the module zoo.config
      found += [(node.lineno, f"{base}.{alias.name}" if (REPO / base.replace(".", "/") / alias.name).exists()
                 or (REPO / base.replace(".", "/") / f"{alias.name}.py").exists() else base) for alias in node.names]
  return [(line, name) for line, name in found if name.split(".")[0] in ROOTS]


def violations() -> list[str]:
  order = floors()
  packages = {package: level for level, line in enumerate(order) for package in line}
  found = []
  for root in ROOTS:
    for path in sorted((REPO / root).rglob("*.py")):
      module = module_name(path)
      here = package_of(module, packages)
      where = path.relative_to(REPO)
      if module == "zoo":  # the package root runs before every zoo module: it may import the lowest floor only
        here, level = "zoo (package root)", -1
      elif here is None:
        found.append(f"{where}: module {module} is on no floor of docs/design.md's layers block")
        continue
      else:
        level = packages[here]
      for line, imported in imports(path, module):
        target = package_of(imported, packages)
        if target is None or target == here or packages[target] < level or (level == -1 and packages[target] == 0):
          continue
        relation = "the same floor" if packages[target] == level else "a higher floor"
        found.append(f"{where}:{line} imports {imported}: {target} (floor {packages[target]}) is on {relation} than "
                     f"{here} (floor {level})")
  return found


def test_layers_block_names_each_package_once():
  names = [package for line in floors() for package in line]
  assert names and len(names) == len(set(names)), names


def test_no_import_runs_up_a_floor():
  found = violations()
  assert not found, "imports against the layer order of docs/design.md:\n" + "\n".join(found)
