"""Macros of BUILD: one library per package, one py_test per test file, one
py_binary per script. `tests/build_test.py` expands them the same way (CI has
no Bazel) and checks every target's deps against its sources' imports.

Deps name project targets ("ops", "spaces") and pip packages ("numpy")
separately; a macro's deps are the union over the files it globs.
"""

load("@pip//:requirements.bzl", "requirement")
load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")

def _deps(deps, pip):
    return [":" + d for d in deps] + [requirement(p) for p in pip]

def _stem(src):
    return src.split("/")[-1][:-len(".py")]

def enas_library(name, srcs, deps = [], pip = [], testonly = False):
    """A py_library of `srcs` (a package's glob, or a list of files)."""
    py_library(name = name, srcs = srcs, deps = _deps(deps, pip), testonly = testonly)

def enas_tests(folder, deps = [], pip = []):
    """A py_test per `folder`/*_test.py, named after folder and file:
    tests/strategies/random_test.py -> strategies_random_test."""
    prefix = folder[len("tests"):].strip("/").replace("/", "_")
    for src in native.glob([folder + "/*_test.py"]):
        py_test(
            name = prefix + "_" + _stem(src) if prefix else _stem(src),
            srcs = [src],
            main = src,
            deps = _deps(deps, pip),
        )

def enas_binaries(folder, prefix, deps = [], pip = [], exclude = []):
    """A py_binary per script of `folder` (not __init__.py, not `exclude`),
    named `prefix` + file stem: tools/search.py -> enas-search."""
    skipped = [folder + "/__init__.py"] + [folder + "/" + f for f in exclude]
    for src in native.glob([folder + "/*.py"], exclude = skipped):
        py_binary(
            name = prefix + _stem(src),
            srcs = [src],
            main = src,
            deps = _deps(deps, pip),
        )
