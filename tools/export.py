r"""enas-export: export a trained network as a TF SavedModel and TFLite files.

Usage:
  enas-export --run_dir=RUN [--export_dir=DIR] [--overwrite] [--num_samples=N]
              [--data_dir=DIR] [--download] [--tfds_data_dir=DIR]

RUN is a final-training run directory holding model.keras and summary.json.
The export (default RUN/export) holds saved_model/ (signature serving_default:
uint8 `images` [N, H, W, C] in, float32 `probabilities` out; normalisation is
inside), model_float32.tflite, model_dynamic_range.tflite (int8 weights) and
export_report.json. Each artifact is reloaded and compared with the Keras
model on the first --num_samples test images of the run's dataset.

A language-model run (enas-train on an rnn cell, --dataset=ptb) is exported
as saved_model/ with two signatures, serving_default (int32 `tokens`
[batch, time]) and score_with_state (`tokens` and a float32 `state`
[batch, hidden]), both returning per-token `log_probs` [batch, time - 1],
`perplexity` [batch] and the next `state` (enas_tf.export.lm), plus
model_float32.tflite, which scores one sequence at a time (`tokens`
[1, time]; the report says why if it could not be made). They are checked
against the Keras model on the first --num_samples 65-token sequences of the
PTB test text (read from the run's --data_dir, or --data_dir).

Exit status: 0 when every artifact is within its tolerance; 1 when one is not
(the files stay written for inspection, but may be wrong); 2 for user errors.

Examples:
  enas-export --run_dir=runs/final
  enas-export --run_dir=runs/final --export_dir=/tmp/serve --overwrite
"""

import os
import sys
import tempfile
from types import ModuleType

if __package__ in (None, ""):  # `python tools/export.py` from a clone
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Before TensorFlow is imported, so that its C++ logs stay out of the table.
from absl import app, flags, logging

from enas_tf import data
from enas_tf.errors import UserError
from enas_tf.runtime import cli

flags.DEFINE_string("run_dir", None, "Final-training run directory (model.keras, summary.json).")
flags.DEFINE_string("export_dir", None, "Where to write the export; default RUN/export.")
flags.DEFINE_bool("overwrite", False, "Replace an existing export in --export_dir.")
flags.DEFINE_integer(
    "num_samples",
    256,
    "Test images (language models: 65-token test sequences) to compare the "
    "artifacts with the Keras model on.",
    lower_bound=1,
)
flags.DEFINE_string(
    "data_dir",
    None,
    "Directory holding the dataset's files (not needed for digits; default for "
    "language models: the run's).",
)
flags.DEFINE_bool("download", False, "Let tensorflow-datasets download the dataset if missing.")
flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data directory.")
flags.mark_flag_as_required("run_dir")

FLAGS = flags.FLAGS


def _size(num_bytes: int) -> str:
    if num_bytes < 1024:
        return f"{num_bytes} B"
    kib = num_bytes / 1024
    return f"{kib:.1f} KiB" if kib < 1024 else f"{kib / 1024:.1f} MiB"


def _diff(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2e}"


def _table(report: dict) -> str:
    rows = [("artifact", "size", "max abs diff", "top-1 agree", "tolerance", "ok")]
    for name, a in report["artifacts"].items():
        tol = a["tolerance"]
        rows.append((
            name,
            _size(a["size_bytes"]),
            _diff(a["max_abs_diff"]),
            f"{100 * a['top1_agreement']:.1f}%",
            f"<={tol['max_abs_diff']:g}, >={100 * tol['min_top1_agreement']:g}%",
            "yes" if a["passed"] else "NO",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


def _import_export() -> ModuleType:
    """Imports `enas_tf.export.image`, and so TensorFlow, hiding its startup noise.

    TF 2.21 reports its CUDA probing through absl C++ logging, which ignores
    TF_CPP_MIN_LOG_LEVEL and writes straight to file descriptor 2. What it
    writes there is shown only if the import fails. Importing here rather
    than at the top also keeps --help and flag errors fast.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            from enas_tf.export import run as export_run

            tf.config.list_physical_devices()  # probes CUDA now, quietly
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
    return export_run


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
    if not FLAGS["verbosity"].present:  # TF logs each SavedModel write at INFO
        logging.set_verbosity(logging.WARNING)
    export_run = _import_export()
    run_dir = FLAGS.run_dir
    export_dir = FLAGS.export_dir or os.path.join(run_dir, "export")
    if export_run.read_summary_json(run_dir).get("task") == "lm":
        return _export_lm(export_run, run_dir, export_dir)
    # Cheap checks first, so a user error never waits for the dataset.
    summary = export_run.read_summary(run_dir)
    export_run.check_export_dir(run_dir, export_dir, FLAGS.overwrite)
    splits = data.load_images(
        summary["dataset"],
        data_dir=FLAGS.data_dir,
        valid_size=0,
        download=FLAGS.download,
        tfds_data_dir=FLAGS.tfds_data_dir,
    )
    images = splits.test_images[: FLAGS.num_samples]
    report = export_run.export_run(run_dir, export_dir, images, overwrite=FLAGS.overwrite)
    print(_table(report))
    print(
        f"checked on {report['num_samples']} {summary['dataset']} test images "
        f"(TFLite interpreter: {report['tflite_interpreter']})"
    )
    print(f"exported to {export_dir}")
    failed = [
        f"{name} (max abs diff {_diff(a['max_abs_diff'])}, top-1 agreement "
        f"{100 * a['top1_agreement']:.1f}%)"
        for name, a in report["artifacts"].items()
        if not a["passed"]
    ]
    if failed:
        print(
            f"{cli.program_name()}: check failed: {'; '.join(failed)} beyond the "
            f"tolerance in the table. The exported files in {export_dir} may be "
            "wrong: inspect them before use.",
            file=sys.stderr,
        )
        return 1
    return 0


def _export_lm(export_run: ModuleType, run_dir: str, export_dir: str) -> int:
    """Exports a language-model run (`enas_tf.export.lm`)."""
    from enas_tf.export import lm as export_lm

    summary = export_lm.read_lm_summary(run_dir)
    export_run.check_export_dir(run_dir, export_dir, FLAGS.overwrite)
    data_dir = FLAGS.data_dir or summary.get("config", {}).get("data", {}).get("data_dir")
    if not data_dir:
        raise UserError("Checking the export needs the Penn Treebank test text: give --data_dir.")
    corpus = data.load_ptb(data_dir)
    tokens = export_lm.sample_sequences(corpus.test, FLAGS.num_samples)
    report = export_lm.export_lm_run(run_dir, export_dir, tokens, overwrite=FLAGS.overwrite)
    rows = [("artifact", "size", "max abs diff", "tolerance", "ok")]
    for name, a in report["artifacts"].items():
        if a["passed"] is None:
            rows.append((name, "-", "-", "-", "not written"))
            continue
        size = _size(a["size_bytes"]) if "size_bytes" in a else "-"
        ok = "yes" if a["passed"] else "NO"
        rows.append((name, size, _diff(a["max_abs_diff"]), f"<={a['tolerance']:g}", ok))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(
        f"checked on {report['num_sequences']} test sequences of "
        f"{report['sequence_length']} tokens (log-probabilities; Keras perplexity "
        f"{report['keras_perplexity']:.2f})"
    )
    note = report["artifacts"]["tflite_float32"].get("note")
    if note:
        print(f"note: {note}")
    print(f"exported to {export_dir}")
    if not report["passed"]:
        print(
            f"{cli.program_name()}: check failed: an artifact is beyond its "
            f"tolerance (see the table). The exported files in {export_dir} may be "
            "wrong: inspect them before use.",
            file=sys.stderr,
        )
        return 1
    return 0


def run() -> None:
    """Console-script entry point (`enas-export`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
