"""Every command under launch/ (a module with a `main`, found here, not listed) on one flags library: `--help` exits 0
and lists every flag its docstring's commands use, and an unknown flag is one `error:` line with exit status 2."""

import ast
import re
import subprocess
import sys

import pytest

from conftest import REPO, default_or_slow


def has_main(path) -> bool:
  return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in ast.parse(path.read_text()).body)


def commands() -> dict[str, str]:
  """{module run by `python -m`: its source} for every module under launch/ that defines `main`."""
  found = {}
  for path in sorted((REPO / "launch").rglob("*.py")):
    if has_main(path):
      parts = path.relative_to(REPO).with_suffix("").parts
      found[".".join(parts[:-1] if parts[-1] == "__main__" else parts)] = path.read_text()
  return found


COMMANDS = commands()


def run(module: str, *argv) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)


def documented_flags(module: str) -> set[str]:
  """The flags of the `python -m <module> ...` lines in the module's docstring (`--config.a.b=1` is `--config`)."""
  doc = re.sub(r"\n\s+\[--", " [--", ast.get_docstring(ast.parse(COMMANDS[module])) or "")  # continued lines
  lines = [line.split("#")[0] for line in doc.splitlines() if f"python -m {module} " in line]
  return {name for line in lines for name in re.findall(r"--([a-z][a-z0-9_]*)", line)}


def test_the_commands_are_found():
  assert {"launch.train", "launch.evaluate", "launch.generate", "launch.bench_train", "launch.estimate_tpu",
          "launch.pathfinder_samples", "launch.tpu"} <= set(COMMANDS)
  assert "launch.cli" not in COMMANDS and "launch.jsonl" not in COMMANDS


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_exits_0_and_lists_the_flags_the_docstring_uses(module):
  result = run(module, "--help")
  assert result.returncode == 0, result.stderr[-3000:]
  flags = documented_flags(module)
  assert flags, f"{module}'s docstring shows no command line with flags"
  missing = {name for name in flags if not re.search(rf"^\s+--(\[no\])?{name}:", result.stdout, re.M)}
  assert not missing, f"--help of {module} does not list {sorted(missing)}:\n{result.stdout}"


# One command per way of parsing flags runs by default (`cli.run`; absl's `app.run` with a parser of its own:
# reproduce; verb first: tpu); every command in the slow suite.
@pytest.mark.parametrize("module", default_or_slow(sorted(COMMANDS),
                                                   ("launch.train", "launch.reproduce", "launch.tpu")))
def test_an_unknown_flag_is_one_error_line_and_exit_status_2(module):
  result = run(module, "--no_such_flag=1")
  assert result.returncode == 2 and result.stdout == "", (result.returncode, result.stdout[-3000:])
  assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr[-3000:]
