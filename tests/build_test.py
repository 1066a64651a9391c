"""Keeps BUILD honest, since CI has no Bazel.

Every module is in one `py_library`, every test file is a `py_test`, every tool
is a `py_binary`, every listed file exists, and each target's `deps` are exactly
the project targets and pip requirements its sources import.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Import name -> pip requirement name.
PIP_NAMES = {
    "absl": "absl-py",
    "keras": "keras",
    "numpy": "numpy",
    "PIL": "pillow",
    "pytest": "pytest",
    "sklearn": "scikit-learn",
    "tensorflow": "tensorflow",
    "tensorflow_datasets": "tensorflow-datasets",
}
PROJECT_ROOTS = ("enas_tf", "tools", "tests", "bench")


def _literal(node):
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "requirement":
        return "@pip:" + node.args[0].value
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    raise AssertionError(f"BUILD: unsupported value {ast.dump(node)}")


def _rules():
    tree = ast.parse((ROOT / "BUILD").read_text())
    rules = []
    for stmt in tree.body:
        call = stmt.value
        if call.func.id == "load":
            continue
        rule = {k.arg: _literal(k.value) for k in call.keywords}
        rule["kind"] = call.func.id
        rules.append(rule)
    return rules


RULES = _rules()
BY_SRC = {src: r["name"] for r in RULES for src in r.get("srcs", [])}


def _module_file(dotted):
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return str(candidate.relative_to(ROOT))
    return None


def _imports(path):
    """Project targets and pip names imported by one source file."""
    targets, pips = set(), set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = [n if _module_file(n) else node.module for n in names]
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT_ROOTS:
                found = _module_file(name)
                assert found, f"{path} imports {name}, which does not exist"
                targets.add(BY_SRC.get(found, f"<unlisted {found}>"))
            elif top in PIP_NAMES:
                pips.add("@pip:" + PIP_NAMES[top])
    return targets, pips


def test_listed_files_exist():
    for rule in RULES:
        for src in rule.get("srcs", []):
            assert (ROOT / src).is_file(), f"{rule['name']}: {src} does not exist"


def test_names_are_unique():
    names = [r["name"] for r in RULES]
    assert len(names) == len(set(names))


def test_every_source_file_is_listed_once():
    listed = [src for r in RULES for src in r.get("srcs", [])]
    assert len(listed) == len(set(listed))
    for folder in PROJECT_ROOTS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            assert rel in BY_SRC, f"{rel} is missing from BUILD"


def test_kinds():
    kinds = {src: r["kind"] for r in RULES for src in r.get("srcs", [])}
    for path in sorted((ROOT / "tests").rglob("*_test.py")):
        rel = path.relative_to(ROOT)
        assert kinds[str(rel)] == "py_test", f"{rel} must be a py_test"
        # tests/strategies/random_test.py -> strategies_random_test
        assert BY_SRC[str(rel)] == "_".join([*rel.parts[1:-1], path.stem])
    for path in sorted((ROOT / "tools").glob("*.py")):
        if path.name != "__init__.py":
            rel = str(path.relative_to(ROOT))
            assert kinds[rel] == "py_binary", f"{rel} must be a py_binary"
    for path in sorted((ROOT / "enas_tf").rglob("*.py")):
        assert kinds[str(path.relative_to(ROOT))] == "py_library"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["name"])
def test_deps_mirror_imports(rule):
    targets, pips = set(), set()
    for src in rule.get("srcs", []):
        t, p = _imports(src)
        targets |= t
        pips |= p
    targets.discard(rule["name"])
    deps = {d.lstrip(":") if not d.startswith("@pip:") else d for d in rule.get("deps", [])}
    assert deps == targets | pips, (
        f"{rule['name']}: missing {sorted((targets | pips) - deps)}, "
        f"unused {sorted(deps - targets - pips)}"
    )


def test_setup_lists_every_package():
    # setup.py names its packages; a package missing there is missing from
    # an installed (non-editable) enas-tf.
    call = next(node for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    listed = {k.arg: _literal(k.value) for k in call.keywords if k.arg == "packages"}
    packages = {".".join(path.parent.relative_to(ROOT).parts)
                for path in (ROOT / "enas_tf").rglob("__init__.py")}
    assert set(listed["packages"]) - {"enas_tf.tools"} == packages
