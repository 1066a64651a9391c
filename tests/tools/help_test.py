"""`--help` of every tool, started as a script and as a console script."""

import ast
import re
import sys
from pathlib import Path

import pytest

from enas_tf.testing import run_at_once

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ["arc", "data", "search", "train", "export"]
# A console script's __main__ is a generated wrapper, not the tool module.
CONSOLE = "import sys; sys.argv[0] = 'enas-{0}'; from enas_tf.tools.{0} import run; run()"


def _defined_flags(tool):
    """The flag names tools/`tool`.py defines with literal names."""
    tree = ast.parse((ROOT / "tools" / f"{tool}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("DEFINE_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


@pytest.fixture(scope="module")
def helps(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("help")
    commands = {}
    for tool in TOOLS:
        script = [sys.executable, str(ROOT / "tools" / f"{tool}.py"), "--help"]
        commands[tool, "script"] = (script, cwd)
        commands[tool, "console"] = ([sys.executable, "-c", CONSOLE.format(tool), "--help"], cwd)
    commands["search", "full"] = ([*commands["search", "script"][0][:2], "--helpfull"], cwd)
    return run_at_once(commands, timeout=300)


@pytest.mark.parametrize("how", ["script", "console"])
@pytest.mark.parametrize("tool", TOOLS)
def test_help_shows_the_usage_and_every_flag_with_defaults(helps, tool, how):
    result = helps[tool, how]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # nothing from TensorFlow, no absl notice
    doc = ast.get_docstring(ast.parse((ROOT / "tools" / f"{tool}.py").read_text()))
    first = doc.strip().splitlines()[0]
    assert result.stdout.startswith(first)
    shown = set(re.findall(r"^  --(?:\[no\])?(\w+):", result.stdout, re.MULTILINE))
    assert _defined_flags(tool) <= shown, _defined_flags(tool) - shown
    assert "--output_dir" in result.stdout or tool in ("arc", "data", "export")
    assert "(default: " in result.stdout
    assert "--verbosity:" not in result.stdout  # absl's own: --helpfull only
    assert (
        helps[tool, "script"].stdout
        == helps[tool, "console"].stdout.replace(f"enas-{tool}", f"{tool}.py")
        or helps[tool, "script"].stdout == helps[tool, "console"].stdout
    )


def test_search_help_groups_the_settings(helps):
    out = helps["search", "script"].stdout
    titles = re.findall(r"^(\S[^\n]*):\n  --", out, re.MULTILINE)
    assert titles[:5] == [
        "Data",
        "Search space",
        "Supernet (shared weights)",
        "Optimiser of the shared weights",
        "Search loop",
    ]
    # Settings shared by strategies are listed once, under all their names.
    strategy = out.index("Strategies nas, reinforce (--algorithm=nas|reinforce):")
    assert "Strategy evolution (--algorithm=evolution):\n  --population_size" in out
    assert "Strategies evolution, nas (--algorithm=evolution|nas):\n  --child_epochs" in out
    assert strategy < out.index("  --controller_lr:") < out.index("Run:\n")
    assert "  --controller_lr: Controller Adam learning rate" in out
    assert "(default: 0.0035)" in out[strategy:]


def test_helpfull_adds_absl_flags(helps):
    result = helps["search", "full"]
    assert result.returncode == 0 and result.stderr == ""
    out = result.stdout
    assert out.index("  --controller_lr:") < out.index("  --verbosity:")
    assert "--flagfile=FILE" in out
