"""Keeps BUILD honest, since CI has no Bazel.

BUILD calls the macros of build_defs.bzl; this file expands them as Bazel
would (globs included) and checks that every module is in one library,
every test file is a `py_test`, every tool and benchmark a `py_binary`, and
that each macro's deps are exactly the project targets and pip packages its
files import. It also checks the package's layering: subpackages import only
from their own layer or the layers below.
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
    "tensorboard": "tensorboard",
}
PROJECT_ROOTS = ("enas_tf", "tools", "tests", "bench")
MACROS = ("enas_library", "enas_tests", "enas_binaries")

# enas_tf's subpackages from the bottom up; a module imports from its own
# package and from lower layers only: never from above, never sideways (the
# supernets and the children, for one, share nothing but the op table and
# the spaces). README, "Layout".
LAYERS = (
    ("errors",),
    ("spaces", "data", "ops"),
    ("runtime",),
    ("viz", "controllers"),
    ("strategies",),
    ("configs",),
    ("child", "supernet", "lm"),
    ("train",),
    ("search",),
    ("export",),
    ("api",),
    ("testing",),
)


def _glob(patterns, exclude=()):
    skipped = {str(p) for p in exclude}
    found = {str(p.relative_to(ROOT)) for pat in patterns for p in ROOT.glob(pat)}
    return sorted(found - skipped)


def _value(node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "glob":
        kwargs = {k.arg: _value(k.value) for k in node.keywords}
        return _glob(_value(node.args[0]), kwargs.get("exclude", ()))
    raise AssertionError(f"BUILD: unsupported value {ast.dump(node)}")


def _stem(src):
    return Path(src).stem


def _expand(kind, args):
    """The (name, rule kind, srcs) targets of one macro call."""
    if kind == "enas_library":
        return [(args["name"], "py_library", args["srcs"])]
    if kind == "enas_tests":
        folder = args["folder"]
        prefix = folder[len("tests") :].strip("/").replace("/", "_")
        return [
            (f"{prefix}_{_stem(src)}" if prefix else _stem(src), "py_test", [src])
            for src in _glob([f"{folder}/*_test.py"])
        ]
    if kind == "enas_binaries":
        folder = args["folder"]
        skipped = [f"{folder}/__init__.py", *(f"{folder}/{f}" for f in args.get("exclude", []))]
        return [
            (args["prefix"] + _stem(src), "py_binary", [src])
            for src in _glob([f"{folder}/*.py"], skipped)
        ]
    raise AssertionError(f"BUILD: unknown macro {kind}")


def _calls():
    calls = []
    for stmt in ast.parse((ROOT / "BUILD").read_text()).body:
        call = stmt.value
        if call.func.id == "load":
            continue
        assert call.func.id in MACROS, f"BUILD: call {call.func.id} through a macro"
        args = {k.arg: _value(k.value) for k in call.keywords}
        calls.append({"kind": call.func.id, "args": args,
                      "targets": _expand(call.func.id, args)})  # fmt: skip
    return calls


CALLS = _calls()
TARGETS = [t for c in CALLS for t in c["targets"]]
BY_SRC = {src: name for name, _, srcs in TARGETS for src in srcs}


def _module_file(dotted):
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return str(candidate.relative_to(ROOT))
    return None


def _imported_modules(path):
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                name = f"{node.module}.{a.name}"
                yield name if _module_file(name) else node.module


def _imports(path):
    """Project targets and pip names imported by one source file."""
    targets, pips = set(), set()
    for name in _imported_modules(path):
        top = name.split(".")[0]
        if top in PROJECT_ROOTS:
            found = _module_file(name)
            assert found, f"{path} imports {name}, which does not exist"
            targets.add(BY_SRC.get(found, f"<unlisted {found}>"))
        elif top in PIP_NAMES:
            pips.add(PIP_NAMES[top])
    return targets, pips


def test_macros_exist():
    defs = ast.parse((ROOT / "build_defs.bzl").read_text())
    defined = {f.name for f in defs.body if isinstance(f, ast.FunctionDef)}
    assert set(MACROS) <= defined
    load = ast.parse((ROOT / "BUILD").read_text()).body[0].value
    assert load.func.id == "load" and load.args[0].value == "//:build_defs.bzl"


def test_names_are_unique():
    names = [name for name, _, _ in TARGETS]
    assert len(names) == len(set(names))


def test_every_source_file_is_listed_once():
    listed = [src for _, _, srcs in TARGETS for src in srcs]
    assert len(listed) == len(set(listed))
    for folder in PROJECT_ROOTS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            assert rel in BY_SRC, f"{rel} is missing from BUILD"


def test_kinds():
    kinds = {src: kind for _, kind, srcs in TARGETS for src in srcs}
    for path in sorted((ROOT / "tests").rglob("*_test.py")):
        rel = path.relative_to(ROOT)
        assert kinds[str(rel)] == "py_test", f"{rel} must be a py_test"
        # tests/strategies/random_test.py -> strategies_random_test
        assert BY_SRC[str(rel)] == "_".join([*rel.parts[1:-1], path.stem])
    for path in sorted((ROOT / "tools").glob("*.py")):
        if path.name != "__init__.py":
            rel = str(path.relative_to(ROOT))
            assert kinds[rel] == "py_binary", f"{rel} must be a py_binary"
            assert BY_SRC[rel] == f"enas-{path.stem}"
    for path in sorted((ROOT / "enas_tf").rglob("*.py")):
        assert kinds[str(path.relative_to(ROOT))] == "py_library"


def test_libraries_are_packages():
    # One library per subpackage of enas_tf, named after it.
    for path in sorted((ROOT / "enas_tf").rglob("*.py")):
        parts = path.relative_to(ROOT / "enas_tf").parts
        if len(parts) > 1:
            assert BY_SRC[str(path.relative_to(ROOT))] == parts[0], path


@pytest.mark.parametrize(
    "call", CALLS, ids=lambda c: c["args"].get("name") or c["args"].get("folder")
)
def test_deps_mirror_imports(call):
    targets, pips = set(), set()
    for _, _, srcs in call["targets"]:
        for src in srcs:
            t, p = _imports(src)
            targets |= t
            pips |= p
    targets -= {name for name, _, _ in call["targets"]}
    deps, pip = set(call["args"].get("deps", [])), set(call["args"].get("pip", []))
    assert deps == targets, f"missing {sorted(targets - deps)}, unused {sorted(deps - targets)}"
    assert pip == pips, f"pip: missing {sorted(pips - pip)}, unused {sorted(pip - pips)}"


def _layer(module_path):
    parts = Path(module_path).relative_to("enas_tf").with_suffix("").parts
    name = parts[0]
    return next(i for i, layer in enumerate(LAYERS) if name in layer), name


def test_layers_point_down():
    named = {n for layer in LAYERS for n in layer}
    for path in sorted((ROOT / "enas_tf").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel == "enas_tf/__init__.py":
            continue
        level, package = _layer(rel)
        assert package in named, f"{package}: add it to LAYERS"
        for name in _imported_modules(rel):
            found = _module_file(name)
            if not name.startswith("enas_tf.") or found == "enas_tf/__init__.py":
                continue
            their_level, theirs = _layer(found)
            assert their_level < level or theirs == package, (
                f"{rel} ({package}, layer {level}) imports {name} "
                f"({theirs}, layer {their_level}, not below it)"
            )


def test_setup_lists_every_package():
    # setup.py names its packages; a package missing there is missing from
    # an installed (non-editable) enas-tf.
    call = next(
        node
        for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    )
    listed = {k.arg: _value(k.value) for k in call.keywords if k.arg == "packages"}
    packages = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "enas_tf").rglob("__init__.py")
    }
    assert set(listed["packages"]) - {"enas_tf.tools"} == packages


def _readme_layout():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout\n", 1)[1].split("```\n", 2)[1]
    entries, current = {}, None
    for line in block.splitlines():
        name = line[:22].strip()
        if name:
            current = name
        entries[current] = entries.get(current, "") + " " + line[22:]
    return entries


def test_readme_layout_matches_the_tree():
    entries = _readme_layout()
    packages = sorted(p for p in (ROOT / "enas_tf").iterdir() if (p / "__init__.py").exists())
    for package in packages:
        entry = entries.get(f"{package.name}/")
        assert entry is not None, f"README Layout: no entry for enas_tf/{package.name}/"
        for module in sorted(package.rglob("*.py")):
            if module.name != "__init__.py":
                assert module.name in entry, f"README Layout: {package.name}/ lacks {module.name}"
            if module.parent != package:  # a subpackage, e.g. strategies/reinforce/
                sub = f"{module.parent.name}/"
                assert sub in entry, f"README Layout: {package.name}/ lacks {sub}"
    for module in sorted((ROOT / "enas_tf").glob("*.py")):
        assert module.name == "__init__.py" or module.name in entries, module
    listed = {name.rstrip("/") for name in entries if name.endswith("/")}
    assert listed >= {p.name for p in packages}
    stale = listed - {p.name for p in packages} - {"enas_tf", "tools", "bench", "flags", "tests"}
    assert not stale, f"README Layout lists {sorted(stale)}, which do not exist"
