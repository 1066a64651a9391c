"""Bad input battery: every tool driven with malformed input (issue 6, part 3).

Each case runs one tool in a subprocess, in a directory of its own (the
current directory of the tool, holding its input files and --output_dir),
and checks that the tool

- exits with status 2;
- prints one line `<tool>.py: error: ...` that names the problem (a key
  phrase is asserted) and no Python traceback;
- writes nothing anywhere: every file and folder of the case's directory is
  listed and hashed before and after, so a refused run creates nothing, not
  even its --output_dir, and an existing --output_dir (another run, a
  foreign folder) is left byte-identical.

Refusals come before TensorFlow trains anything; most come before it is even
imported. The cases run a few at a time from one module fixture (only those
selected, e.g. with -k), so the file takes well under a minute on 2 cores.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
       "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
WORKERS = 3
MICRO = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
MACRO3 = "0 1 0 2 0 1"  # a 3-layer macro arc (6 integers)
# Valid, cheap flags: a refusal must come from the one bad input of a case.
TRAIN = ["--dataset=digits", "--valid_size=100", "--num_layers=3", "--out_filters=4",
         "--epochs=1", "--batch_size=256", "--pad=1", "--verbose=0"]  # fmt: skip
SEARCH = ["--num_layers=3", "--num_nodes=2", "--out_filters=4", "--epochs=1",
          "--batch_size=256", "--controller_steps=1", "--num_aggregate=1",
          "--derive_samples=1", "--verbose=0"]  # fmt: skip
IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip


# ----------------------------------------------------------------------------
# Inputs. Each builder writes into the case directory `base` and may return
# placeholders for the arguments ({in}, {out} and these).


def _idx_images(n: int) -> bytes:
    return struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 28 * 28)


def _idx_labels(n: int) -> bytes:
    return struct.pack(">II", 2049, n) + bytes(n)


def _idx_dir(base: Path, **replace: bytes | None) -> None:
    """A Fashion-MNIST folder `in/fmnist` of tiny IDX files, some replaced."""
    folder = base / "in" / "fmnist"
    folder.mkdir()
    files = dict(zip(IDX, (_idx_images(20), _idx_labels(20), _idx_images(10),
                           _idx_labels(10))))  # fmt: skip
    files.update(replace)
    for name, content in files.items():
        if content is not None:
            (folder / name).write_bytes(content)


def _ptb_dir(base: Path, **files: bytes | None) -> None:
    """A PTB folder `in/ptb`; each file is a short text unless given."""
    folder = base / "in" / "ptb"
    folder.mkdir()
    text = b" the cat sat on the mat \n the dog sat on the cat \n" * 20
    for split in ("train", "valid", "test"):
        content = files.get(split, text)
        if content is not None:
            (folder / f"{split}.txt").write_bytes(content)


def _other_run(base: Path) -> None:
    """`out/` holds a finished enas-train run of another architecture."""
    out = base / "out"
    (out / "backup").mkdir(parents=True)
    config = {"tool": "enas-train", "space": "micro",
              "space_config": {"num_nodes": 1, "num_ops": 5},
              "arc": "0 1 1 4 0 0 0 3", "child": {"out_filters": 8, "num_layers": 3},
              "data": {"dataset": "digits", "valid_size": 100}}  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "summary.json").write_text(json.dumps({"arc": config["arc"], "epochs": 3}))
    (out / "history.csv").write_text("epoch,loss\n0,2.3\n1,2.1\n2,1.9\n")
    (out / "model.keras").write_bytes(bytes(range(256)) * 8)
    (out / "backup" / "ckpt.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(512))


def _summary() -> str:
    return json.dumps({"dataset": "digits", "image_shape": [8, 8, 1], "num_classes": 10,
                       "mean": [0.3], "std": [0.37], "arc": MICRO})  # fmt: skip


def _run_dir(base: Path, **files: str | bytes) -> None:
    run = base / "in" / "run"
    run.mkdir()
    for name, content in files.items():
        path = run / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)


def _unwritable(base: Path) -> dict[str, str]:
    """An --output_dir that cannot be created: under a read-only folder, or,
    when that is writable anyway (root), under a regular file."""
    locked = base / "in" / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not os.access(locked, os.W_OK):
        return {"out": str(locked / "run")}
    locked.chmod(0o700)
    (base / "in" / "file").write_text("a file, not a folder\n")
    return {"out": str(base / "in" / "file" / "run")}


BUILDERS = {
    "empty_arc": lambda b: (b / "in" / "arc.txt").write_text(""),
    "binary_arc": lambda b: (b / "in" / "arc.txt").write_bytes(b"\xff\xfe\x00\x01"),
    "truncated_json_arc": lambda b: (b / "in" / "arc.json").write_text(
        '{"space": "micro", "config": {"num_nodes": 5}, "arc": [0, 2, 0'
    ),
    "string_config_arc": lambda b: (b / "in" / "arc.json").write_text(
        '{"space": "micro", "config": {"num_nodes": "five"}, "arc": [0, 1, 1, 4]}'
    ),
    "unknown_space_arc": lambda b: (b / "in" / "arc.json").write_text(
        '{"space": "cnn", "arc": [0, 1, 1, 4]}'
    ),
    "macro_arc_file": lambda b: (b / "in" / "arc.txt").write_text(MACRO3 + "\n"),
    "arc_dir": lambda b: (b / "in" / "arcs").mkdir(),
    "file": lambda b: (b / "in" / "file").write_text("a file, not a folder\n"),
    "ptb_no_train": lambda b: _ptb_dir(b, train=None),
    "ptb_binary": lambda b: _ptb_dir(b, train=b"\x00\xff\xfe garbage \x00" * 10),
    "ptb_empty": lambda b: _ptb_dir(b, train=b""),
    "ptb_tiny": lambda b: _ptb_dir(b, train=b" the cat sat on the mat dog \n"),
    "idx_truncated": lambda b: _idx_dir(b, **{IDX[0]: _idx_images(20)[:1000]}),
    "idx_swapped": lambda b: _idx_dir(b, **{IDX[1]: _idx_images(20)}),
    "idx_missing": lambda b: _idx_dir(b, **{IDX[3]: None}),
    "idx_bad_gzip": lambda b: _idx_dir(
        b, **{IDX[0]: None, IDX[0] + ".gz": gzip.compress(_idx_images(20))[:60]}
    ),
    "cifar_garbled": lambda b: (
        (b / "in" / "cifar").mkdir(),
        (b / "in" / "cifar" / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08" + bytes(99)),
    ),
    "other_run": _other_run,
    "foreign_out": lambda b: (
        (b / "out").mkdir(),
        (b / "out" / "notes.txt").write_text("my notes\n"),
    ),
    "corrupt_config_out": lambda b: (
        (b / "out").mkdir(),
        (b / "out" / "config.json").write_text('{"tool": "enas-tr'),
    ),
    "out_is_file": lambda b: (b / "out").write_text("a file named out\n"),
    "unwritable": _unwritable,
    "search_run": lambda b: _run_dir(
        b,
        **{
            "config.json": '{"tool": "enas-search"}',
            "checkpoints__ckpt-1.index": b"\x00" * 64,
            "best_arc.json": json.dumps({"space": "micro", "arc": [0, 1, 1, 4, 0, 0, 0, 3]}),
        },
    ),
    "unfinished_run": lambda b: _run_dir(
        b, **{"config.json": '{"tool": "enas-train"}', "backup__ckpt.weights.h5": b"\x00" * 64}
    ),
    "no_model_run": lambda b: _run_dir(b, **{"summary.json": _summary()}),
    "garbage_model_run": lambda b: _run_dir(
        b, **{"summary.json": _summary(), "model.keras": b"not a zip file\n" * 10}
    ),
    "truncated_summary_run": lambda b: _run_dir(
        b, **{"summary.json": _summary()[:40], "model.keras": b"PK\x03\x04" + bytes(60)}
    ),
}


# ----------------------------------------------------------------------------
# The cases.


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    tool: str  # arc, train, search, export, data
    args: tuple[str, ...]
    fragments: tuple[str, ...]  # each must be in the error line ("a OR b": either)
    inputs: tuple[str, ...] = ()


def case(id, tool, args, fragments, inputs=()):  # pylint: disable=redefined-builtin
    return Case(id, tool, tuple(args), tuple(fragments), tuple(inputs))


CASES = [
    # Malformed architectures.
    case(
        "arc-wrong-length",
        "arc",
        ["show", "--space=micro", "--num_nodes=5", "0 1 2"],
        ["expected 40 integers", "received 3"],
    ),
    case(
        "arc-out-of-range",
        "arc",
        ["show", "--space=rnn", "0 1 0 1 0 9"],
        ["position 5", "must be in [0, 3]", "received: 9"],
    ),
    case(
        "arc-non-integer",
        "arc",
        ["validate", "--space=micro", "0 1 1.5 4 0 0 0 3"],
        ["position 2", "must be an integer", "'1.5'"],
    ),
    case(
        "arc-macro-string-as-micro",
        "arc",
        ["validate", "--space=micro", MACRO3],
        ["micro", "expected 40 integers", "received 6"],
    ),
    case(
        "arc-macro-name-as-micro",
        "arc",
        ["show", "--space=micro", "enas_macro_final"],
        ["for the macro space, not the micro space"],
    ),
    case("arc-empty-string", "arc", ["show", "--space=micro", ""], ["needs an architecture"]),
    case(
        "arc-empty-file",
        "arc",
        ["show", "--space=micro", "{in}/arc.txt"],
        ["is empty"],
        ["empty_arc"],
    ),
    case(
        "arc-binary-file",
        "arc",
        ["show", "--space=micro", "{in}/arc.txt"],
        ["Cannot read architecture file", "arc.txt"],
        ["binary_arc"],
    ),
    case(
        "arc-missing-file",
        "arc",
        ["show", "{in}/best_arc.json"],
        ["best_arc.json' is not an existing file"],
    ),
    case(
        "arc-directory",
        "arc",
        ["show", "--space=micro", "{in}/arcs"],
        ["is a directory"],
        ["arc_dir"],
    ),
    case(
        "arc-truncated-json",
        "arc",
        ["show", "{in}/arc.json"],
        ["not valid JSON"],
        ["truncated_json_arc"],
    ),
    case(
        "arc-json-bad-config",
        "arc",
        ["show", "{in}/arc.json"],
        ["num_nodes must be an integer", "'five'"],
        ["string_config_arc"],
    ),
    case(
        "arc-json-unknown-space",
        "arc",
        ["show", "{in}/arc.json"],
        ["Unknown search space 'cnn'"],
        ["unknown_space_arc"],
    ),
    case(
        "arc-huge-space",
        "arc",
        ["info", "--space=macro", "--num_layers=100000"],
        ["num_layers must be at most 1000", "100000"],
    ),
    case(
        "arc-output-under-file",
        "arc",
        ["random", "--space=rnn", "--output={in}/file/arc.txt"],
        ["Cannot write", "is a file, not a directory"],
        ["file"],
    ),
    case(
        "arc-output-is-directory",
        "arc",
        ["random", "--space=rnn", "--output={in}/arcs", "--overwrite"],
        ["is a directory", "file to write"],
        ["arc_dir"],
    ),
    case(
        "train-wrong-length",
        "train",
        ["--space=micro", "--arc=0 1 2", "--output_dir={out}", *TRAIN],
        ["expected 40 integers", "received 3"],
    ),
    case(
        "train-negative",
        "train",
        ["--space=micro", "--arc=-1 1 1 4 0 0 0 3", "--output_dir={out}", *TRAIN],
        ["position 0", "must be in [0, 1]", "received: -1"],
    ),
    case(
        "train-non-integer",
        "train",
        ["--space=micro", "--arc=0,1,x,4,0,0,0,3", "--output_dir={out}", *TRAIN],
        ["position 2", "must be an integer", "'x'"],
    ),
    case(
        "train-macro-file-as-micro",
        "train",
        ["--space=micro", "--arc={in}/arc.txt", "--output_dir={out}", *TRAIN],
        ["micro", "received 6"],
        ["macro_arc_file"],
    ),
    case(
        "train-empty-arc",
        "train",
        ["--arc=", "--output_dir={out}", *TRAIN],
        ["Give the architecture with --arc"],
    ),
    case(
        "train-missing-arc-file",
        "train",
        ["--arc={in}/search/best_arc.json", "--output_dir={out}", *TRAIN],
        ["best_arc.json' is not an existing file"],
    ),
    case(
        "train-rnn-cell-on-digits",
        "train",
        ["--arc=enas_lm_ptb", "--output_dir={out}", *TRAIN],
        ["an rnn cell", "train it with --dataset=ptb"],
    ),
    # Datasets: unknown, missing files, truncated or garbled files.
    case(
        "train-unknown-dataset",
        "train",
        ["--arc=enas_micro_final", "--dataset=imagenet", "--output_dir={out}"],
        [
            "--dataset=imagenet",
            "digits, mnist, fashion_mnist, cifar10, cifar100, folder",
            "tfds:NAME",
            "ptb",
        ],
    ),
    case(
        "search-unknown-dataset",
        "search",
        ["--dataset=svhn", "--output_dir={out}"],
        ["--dataset=svhn"],
    ),
    case(
        "train-ptb-no-data-dir",
        "train",
        ["--arc=enas_lm_ptb", "--output_dir={out}"],
        ["--dataset=ptb needs --data_dir"],
    ),
    case(
        "train-ptb-missing-train",
        "train",
        ["--arc=enas_lm_ptb", "--data_dir={in}/ptb", "--output_dir={out}"],
        ["train.txt is missing"],
        ["ptb_no_train"],
    ),
    case(
        "train-ptb-binary",
        "train",
        ["--arc=enas_lm_ptb", "--data_dir={in}/ptb", "--output_dir={out}"],
        ["train.txt is not UTF-8 text"],
        ["ptb_binary"],
    ),
    case(
        "train-ptb-too-short",
        "train",
        [
            "--arc=enas_lm_ptb",
            "--data_dir={in}/ptb",
            "--output_dir={out}",
            "--epochs=1",
            "--verbose=0",
        ],
        ["The train split has", "too few for --batch_size=64"],
        ["ptb_tiny"],
    ),
    case(
        "search-ptb-empty-train",
        "search",
        ["--space=rnn", "--data_dir={in}/ptb", "--output_dir={out}"],
        ["train.txt is empty"],
        ["ptb_empty"],
    ),
    case(
        "data-ptb-missing-dir",
        "data",
        ["--dataset=ptb", "--data_dir={in}/ptb"],
        ["Penn Treebank directory", "does not exist"],
    ),
    case(
        "train-idx-truncated",
        "train",
        [
            "--arc=enas_micro_final",
            "--dataset=fashion_mnist",
            "--data_dir={in}/fmnist",
            "--output_dir={out}",
        ],
        ["train-images-idx3-ubyte is truncated"],
        ["idx_truncated"],
    ),
    case(
        "search-idx-swapped",
        "search",
        ["--dataset=fashion_mnist", "--data_dir={in}/fmnist", "--output_dir={out}"],
        ["is not an IDX label file", "magic number is 2051"],
        ["idx_swapped"],
    ),
    case(
        "train-idx-missing-file",
        "train",
        [
            "--arc=enas_micro_final",
            "--dataset=mnist",
            "--data_dir={in}/fmnist",
            "--output_dir={out}",
        ],
        ["only part of the IDX files", "missing t10k-labels-idx1-ubyte"],
        ["idx_missing"],
    ),
    case(
        "data-idx-bad-gzip",
        "data",
        ["--dataset=fashion_mnist", "--data_dir={in}/fmnist"],
        ["train-images-idx3-ubyte.gz is not a valid gzip file"],
        ["idx_bad_gzip"],
    ),
    case(
        "train-cifar-garbled",
        "train",
        [
            "--arc=enas_micro_final",
            "--dataset=cifar10",
            "--data_dir={in}/cifar",
            "--output_dir={out}",
        ],
        ["cifar-10-python.tar.gz is not a readable .tar.gz"],
        ["cifar_garbled"],
    ),
    case(
        "train-no-dataset-files",
        "train",
        ["--arc=enas_micro_final", "--dataset=mnist", "--data_dir={in}", "--output_dir={out}"],
        ["'mnist' is not available offline", "--download"],
    ),
    # Contradictory flags.
    case(
        "search-lm-flag-on-cnn",
        "search",
        ["--space=micro", "--bptt=20", "--output_dir={out}"],
        ["--bptt applies only to language-model searches"],
    ),
    case(
        "search-mirrored-rnn",
        "search",
        ["--space=rnn", "--strategy=mirrored", "--output_dir={out}"],
        ["--strategy applies only to image searches"],
    ),
    case(
        "search-macro-on-ptb",
        "search",
        ["--space=macro", "--dataset=ptb", "--output_dir={out}"],
        ["search it with --space=rnn", "--space=macro"],
    ),
    case(
        "search-too-many-ops",
        "search",
        ["--space=micro", "--num_ops=9", "--output_dir={out}"],
        ["num_ops must be at most 5"],
    ),
    case(
        "search-odd-filters",
        "search",
        [*SEARCH, "--out_filters=7", "--output_dir={out}"],
        ["out_filters must be an even number"],
    ),
    case(
        "search-micro-one-layer",
        "search",
        [*SEARCH, "--num_layers=1", "--output_dir={out}"],
        ["needs num_layers >= 3"],
    ),
    case(
        "search-cutout-too-big",
        "search",
        [*SEARCH, "--cutout_size=20", "--output_dir={out}"],
        ["--cutout_size=20", "8x8 images of digits"],
    ),
    case(
        "search-devices-without-mirrored",
        "search",
        ["--devices=/cpu:0", "--output_dir={out}"],
        ["--devices needs --strategy=mirrored"],
    ),
    # Mixed precision and XLA (enas_tf.runtime.precision).
    case(
        "train-bad-precision",
        "train",
        ["--arc=enas_micro_final", "--precision=float16", "--output_dir={out}", *TRAIN],
        ["--precision=float16", "float32|mixed_float16|mixed_bfloat16"],
    ),
    case(
        "search-bad-precision",
        "search",
        [*SEARCH, "--precision=bfloat16", "--output_dir={out}"],
        ["--precision=bfloat16", "float32|mixed_float16|mixed_bfloat16"],
    ),
    case(
        "train-precision-on-rnn",
        "train",
        ["--arc=enas_lm_ptb", "--precision=mixed_bfloat16", "--output_dir={out}"],
        ["--precision applies only to image networks"],
    ),
    case(
        "search-precision-on-rnn",
        "search",
        ["--space=rnn", "--precision=mixed_float16", "--output_dir={out}"],
        ["--precision applies only to image searches"],
    ),
    case(
        "search-jit-compile",
        "search",
        [*SEARCH, "--jit_compile", "--output_dir={out}"],
        ["cannot compile its child step with XLA", "Dynamic output feature dim"],
    ),
    case(
        "train-cnn-flag-on-rnn",
        "train",
        ["--arc=enas_micro_final", "--hidden_size=10", "--output_dir={out}"],
        ["--hidden_size applies only to language models"],
    ),
    case(
        "train-drop-path-on-macro",
        "train",
        ["--arc=enas_macro_final", "--drop_path_keep_prob=0.5", "--output_dir={out}"],
        ["no auxiliary head and no drop path"],
    ),
    case(
        "train-ptb-with-micro-arc",
        "train",
        ["--arc=enas_micro_final", "--dataset=ptb", "--output_dir={out}"],
        ["--dataset=ptb trains language models"],
    ),
    case(
        "train-init-from-non-search",
        "train",
        ["--init_from_search={in}/run", "--output_dir={out}", *TRAIN],
        ["not an enas-search run directory"],
        ["no_model_run"],
    ),
    # Output directories.
    case(
        "train-other-run",
        "train",
        ["--arc=enas_micro_final", "--output_dir={out}", *TRAIN],
        ["holds a different run", "--overwrite"],
        ["other_run"],
    ),
    case(
        "search-other-run",
        "search",
        [*SEARCH, "--output_dir={out}"],
        ["holds a different run", "--overwrite"],
        ["other_run"],
    ),
    case(
        "train-foreign-dir",
        "train",
        ["--arc=enas_micro_final", "--output_dir={out}", *TRAIN],
        ["not a run directory"],
        ["foreign_out"],
    ),
    case(
        "search-foreign-dir",
        "search",
        [*SEARCH, "--output_dir={out}"],
        ["not a run directory"],
        ["foreign_out"],
    ),
    case(
        "train-corrupt-config",
        "train",
        ["--arc=enas_micro_final", "--output_dir={out}", *TRAIN],
        ["Cannot read", "config.json", "fix or remove it"],
        ["corrupt_config_out"],
    ),
    case(
        "train-output-is-file",
        "train",
        ["--arc=enas_micro_final", "--output_dir={out}", *TRAIN],
        ["Cannot create --output_dir", "is a file, not a directory"],
        ["out_is_file"],
    ),
    case(
        "train-unwritable",
        "train",
        ["--arc=enas_micro_final", "--output_dir={out}", *TRAIN],
        ["--output_dir", "not writable OR is a file, not a directory"],
        ["unwritable"],
    ),
    case(
        "search-unwritable",
        "search",
        [*SEARCH, "--output_dir={out}"],
        ["--output_dir", "not writable OR is a file, not a directory"],
        ["unwritable"],
    ),
    case(
        "train-lm-unwritable",
        "train",
        ["--arc=enas_lm_ptb", "--data_dir={in}/ptb", "--output_dir={out}"],
        ["--output_dir", "not writable OR is a file, not a directory"],
        ["ptb_tiny", "unwritable"],
    ),
    # Export of what is not a finished training run.
    case("export-missing-run", "export", ["--run_dir={in}/run"], ["does not exist", "enas-train"]),
    case(
        "export-run-is-file",
        "export",
        ["--run_dir={in}/file"],
        ["is a file, not a run directory"],
        ["file"],
    ),
    case(
        "export-unfinished-run",
        "export",
        ["--run_dir={in}/run"],
        ["summary.json is missing", "unfinished run"],
        ["unfinished_run"],
    ),
    case(
        "export-search-run",
        "export",
        ["--run_dir={in}/run"],
        ["is a search run", "enas-train --arc="],
        ["search_run"],
    ),
    case(
        "export-no-model",
        "export",
        ["--run_dir={in}/run"],
        ["model.keras is missing"],
        ["no_model_run"],
    ),
    case(
        "export-garbage-model",
        "export",
        ["--run_dir={in}/run"],
        ["model.keras is not a .keras (zip) file", "corrupt or truncated"],
        ["garbage_model_run"],
    ),
    case(
        "export-truncated-summary",
        "export",
        ["--run_dir={in}/run"],
        ["summary.json is not valid JSON"],
        ["truncated_summary_run"],
    ),
]


# ----------------------------------------------------------------------------
# Running them.


def snapshot(base: Path) -> dict[str, str]:
    """Every folder and file under `base`: path -> kind, mode and content hash."""
    entries = {}
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                entries[str(path.relative_to(base))] = f"dir {oct(info.st_mode)}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[str(path.relative_to(base))] = f"file {oct(info.st_mode)} {digest}"
    return entries


@dataclasses.dataclass
class Outcome:
    result: subprocess.CompletedProcess
    seconds: float
    before: dict[str, str]
    after: dict[str, str]


def run_case(c: Case, base: Path) -> Outcome:
    (base / "in").mkdir(parents=True)
    keys = {"in": str(base / "in"), "out": str(base / "out")}
    for name in c.inputs:
        placeholders = BUILDERS[name](base)
        if isinstance(placeholders, dict):
            keys.update(placeholders)
    args = [a.format(**keys) for a in c.args]
    before = snapshot(base)
    start = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "tools" / f"{c.tool}.py"), *args],
            capture_output=True,
            text=True,
            cwd=base,
            env=ENV,
            timeout=300,
            check=False,
        )
        return Outcome(result, time.monotonic() - start, before, snapshot(base))
    finally:
        for folder, dirs, _ in os.walk(base):  # let pytest clean up
            for name in dirs:
                os.chmod(Path(folder) / name, 0o700)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Runs the selected cases, WORKERS at a time, in the background."""
    selected = {item.callspec.params["c"].id for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")
                and "c" in item.callspec.params}  # fmt: skip
    pool = concurrent.futures.ThreadPoolExecutor(WORKERS)
    futures = {c.id: pool.submit(run_case, c, tmp_path_factory.mktemp(c.id))
               for c in CASES if c.id in selected}  # fmt: skip
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(c: Case, outcomes):
    outcome = outcomes[c.id].result()
    stderr = outcome.result.stderr
    assert outcome.result.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr  # one paragraph, last
    message = errors[0]
    assert message.startswith(f"{c.tool}.py: error: "), message
    for fragment in c.fragments:
        assert any(f in message for f in fragment.split(" OR ")), (fragment, message)
    before, after = outcome.before, outcome.after
    changed = {
        "created": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "modified": sorted(p for p in set(before) & set(after) if before[p] != after[p]),
    }
    assert after == before, changed


def test_every_case_id_is_unique():
    assert len({c.id for c in CASES}) == len(CASES)


def test_huge_space_info_prints_its_size():
    # Sizes beyond Python's int-to-string limit used to end in a traceback.
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "arc.py"), "info", "--space=macro",
         "--num_layers=1000"],
        capture_output=True, text=True, env=ENV, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "size       151143 digits (~4.31e+151142)" in result.stdout
