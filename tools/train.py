r"""enas-train: train a fixed architecture (final training).

Trains the macro or micro network of an architecture with the ENAS recipe
(SGD with Nesterov momentum, cosine learning rate with warm restarts, L2,
gradient clipping, auxiliary head, drop path, optional cutout and label
smoothing), logs to TensorBoard, checkpoints every epoch, and writes the
trained inference model and a summary.json to --output_dir. Rerunning with
the same --output_dir resumes; a different architecture or incompatible flags
there are refused unless --overwrite.

The architecture (--arc) is an arc string (with --space), the name of a
published architecture (`enas-arc list`), or a file holding the string or the
JSON form (e.g. the best_arc.json of a search).

The network starts from a fresh initialisation, or with
--init_from_search=SEARCH_RUN from the shared weights of an enas-search run
(its latest checkpoint; --arc defaults to its best_arc.json). The network must
then have the search's structure (--num_layers, --out_filters, --dataset);
the differences are listed otherwise.

An rnn architecture (an enas_lm cell, e.g. --arc=enas_lm_ptb or a
--space=rnn search's best_arc.json) is trained as a language model on
--dataset=ptb (the default for rnn cells; --data_dir holds train.txt,
valid.txt, test.txt) with the enas_lm GPU recipe, iterate averaging and the
evaluation protocol of enas_tf.train.lm; summary.json reports the
validation and test perplexity. Flags shared with CNN training (--epochs,
--batch_size, --eval_batch_size, --grad_bound, --seed) take the enas_lm
defaults then unless given (the help shows them as "rnn: ...").

Examples:
  enas-train --flagfile=flags/digits_quick.flags --output_dir=runs/digits
  enas-train --flagfile=flags/cifar10_micro_final.flags --data_dir=~/cifar \
      --output_dir=runs/micro_final
  enas-train --space=micro --arc="0 1 1 4 0 0 0 3" --dataset=digits \
      --num_layers=3 --out_filters=16 --epochs=5 --output_dir=runs/x
  enas-train --init_from_search=runs/quickstart/search --dataset=digits \
      --valid_size=360 --num_layers=3 --out_filters=8 --pad=1 --epochs=5 \
      --output_dir=runs/inherited
  enas-train --flagfile=flags/ptb_final.flags --data_dir=~/ptb \
      --output_dir=runs/ptb_final
"""

import dataclasses
import os
import sys

if __package__ in (None, ""):  # `python tools/train.py` from a clone
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

from enas_tf import data, spaces
from enas_tf.configs import lm as config_lm
from enas_tf.configs.image import ChildConfig, TrainConfig
from enas_tf.configs.lm import LmTrainConfig
from enas_tf.errors import UserError
from enas_tf.runtime import cli, precision, rundir
from enas_tf.runtime.checkpoints import enable_determinism
from enas_tf.supernet import transfer as inherit

# Digit and letter images must not be mirrored.
NO_FLIP = ("digits", "mnist", "fashion_mnist")

# Architecture.
flags.DEFINE_string(
    "arc",
    None,
    "Architecture: arc string (with --space), published name, or a file with "
    "the string or JSON form.",
)
flags.DEFINE_enum("space", None, ["macro", "micro", "rnn"], "Space of a plain --arc string.")
flags.DEFINE_string(
    "init_from_search",
    None,
    "Run directory of an enas-search run: start from its shared weights (the "
    "supernet in its latest readable checkpoint, ENAS weight inheritance) "
    "instead of a fresh initialisation. --arc defaults to its best_arc.json. "
    "The network must have the search's structure (--num_layers, "
    "--out_filters, --dataset); layers the supernet does not have (the "
    "auxiliary head) keep their fresh initialisation. Applied when the run "
    "starts; a resumed run continues from its own checkpoint. The search "
    "directory is only read.",
)
# Data.
cli.define_dataset_flag("Dataset (default: digits; ptb for rnn cells).")
flags.DEFINE_string("data_dir", None, "Directory with the official dataset files (see enas-data).")
flags.DEFINE_bool("download", False, "Let tensorflow-datasets download the data.")
flags.DEFINE_integer(
    "train_size",
    None,
    "Train on only this many training images (a fixed random "
    "subset, the same in every run; default: all).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "valid_size",
    0,
    "Training images held out for validation (0: train on all of them, as "
    "the original final training does).",
    lower_bound=0,
)
# Network.
flags.DEFINE_integer(
    "out_filters", 36, "Channels of the first stage (C; C0 for micro).", lower_bound=2
)
flags.DEFINE_integer(
    "num_layers",
    15,
    "Micro: normal cells L (the net has L + 2 cells, 2 of them reductions). "
    "Macro networks take their depth from the architecture.",
    lower_bound=1,
)
flags.DEFINE_float(
    "keep_prob",
    0.8,
    "Keep probability of the dropout before the classifier.",
    lower_bound=0.0,
    upper_bound=1.0,
)
flags.DEFINE_float(
    "drop_path_keep_prob",
    1.0,
    "Micro: drop-path keep probability reached by the last cell at the end "
    "of training (1: no drop path).",
    lower_bound=0.0,
    upper_bound=1.0,
)
flags.DEFINE_float(
    "aux_weight",
    0.0,
    "Micro: auxiliary head loss weight (0: no aux head).",
    lower_bound=0.0,
)
flags.DEFINE_bool(
    "separable",
    True,
    "Macro: ops 1 and 3 are depthwise-separable convs (the paper); "
    "--noseparable builds regular convs as the original final code did.",
)
flags.DEFINE_bool(
    "layer_base", False, "Micro: the original's extra 1x1 conv on each cell's input 1."
)
flags.DEFINE_enum(
    "cell_output",
    None,
    ["loose_ends", "all"],
    "Micro: a cell's output: loose_ends (the paper's cell: its unused nodes "
    "concatenated) or all (every computed node, as enas-search's supernet computes "
    "by default). Default: loose_ends, or the search's with --init_from_search.",
)
flags.DEFINE_float("l2", 2e-4, "L2 weight on every trainable variable.", lower_bound=0.0)
# Optimisation.
flags.DEFINE_integer(
    "epochs", 630, "Training epochs (rnn: 3000 passes over the text).", lower_bound=1
)
flags.DEFINE_integer("batch_size", 144, "Training batch size (rnn: 64).", lower_bound=1)
flags.DEFINE_integer(
    "eval_batch_size",
    100,
    "Evaluation batch size (rnn: 64, the validation batch; the test split is scored at batch 1).",
    lower_bound=1,
)
flags.DEFINE_float("lr_max", 0.05, "Maximum learning rate.", lower_bound=0.0)
flags.DEFINE_float("lr_min", 1e-4, "Minimum learning rate.", lower_bound=0.0)
flags.DEFINE_integer("lr_t0", 10, "Epochs of the first cosine cycle.", lower_bound=1)
flags.DEFINE_float("lr_t_mul", 2.0, "Each cosine cycle is this many times longer.", lower_bound=1.0)
flags.DEFINE_float("momentum", 0.9, "Nesterov momentum.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float(
    "grad_bound",
    5.0,
    "Global-norm gradient clipping (0: none; rnn: 0.25).",
    lower_bound=0.0,
)
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("cutout_size", 0, "Cutout square side (0: none).", lower_bound=0)
flags.DEFINE_integer("pad", 4, "Zero padding before the random crop (0: no crop).", lower_bound=0)
flags.DEFINE_bool("flip", None, "Random horizontal flips (default: on, off for digit datasets).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, shuffling, augmentation (rnn: 2126).")
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
flags.DEFINE_enum(
    "precision",
    "float32",
    list(precision.PRECISIONS),
    "Compute dtype of the network: float32, mixed_bfloat16 (CPU, TPU) or "
    "mixed_float16 (GPU; dynamic loss scaling); variables, logits, loss and "
    "the saved model.keras stay float32.",
)
flags.DEFINE_integer(
    "max_nonfinite",
    10,
    "Training steps in a row with a NaN or Inf loss or "
    "gradient (each skipped) that stop the run with an error (0: never).",
    lower_bound=0,
)
# Run.
flags.DEFINE_string("output_dir", None, "Run directory (resumed when it exists).")
flags.DEFINE_bool("overwrite", False, "Replace an incompatible earlier run in --output_dir.")
flags.DEFINE_bool(
    "dry_run",
    False,
    "Check the flags, build the network and print its size, then stop "
    "(loads no data, writes nothing).",
)
flags.DEFINE_integer(
    "verbose", 1, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch."
)
flags.DEFINE_bool(
    "deterministic",
    False,
    "Deterministic TensorFlow ops (and seeded RNGs): a run "
    "killed and resumed computes exactly what an uninterrupted run does (some GPU "
    "kernels get slower).",
)
cli.define_strategy_flags()
# Language models (rnn cells on --dataset=ptb): the enas_lm GPU recipe.
LM_DEFAULTS = LmTrainConfig()
LM_FIELDS = [f.name for f in dataclasses.fields(LmTrainConfig)]
LM_ONLY = [
    n
    for n in LM_FIELDS
    if n not in ("epochs", "batch_size", "eval_batch_size", "grad_bound", "seed", "max_nonfinite")
]
for _name in LM_ONLY:
    _default = getattr(LM_DEFAULTS, _name)
    if _name == "average":
        flags.DEFINE_enum(_name, _default, list(config_lm.AVERAGES), config_lm.HELP[_name])
    elif isinstance(_default, bool):
        flags.DEFINE_bool(_name, _default, config_lm.HELP[_name])
    elif isinstance(_default, int):
        flags.DEFINE_integer(_name, _default, config_lm.HELP[_name], lower_bound=0)
    else:
        flags.DEFINE_float(_name, _default, config_lm.HELP[_name], lower_bound=0.0)
# Flags of image networks only; giving them with an rnn cell is an error.
CNN_ONLY = (
    "init_from_search",
    "download",
    "valid_size",
    "train_size",
    "out_filters",
    "num_layers",
    "keep_prob",
    "drop_path_keep_prob",
    "aux_weight",
    "separable",
    "layer_base",
    "cell_output",
    "l2",
    "lr_max",
    "lr_min",
    "lr_t0",
    "lr_t_mul",
    "momentum",
    "label_smoothing",
    "cutout_size",
    "pad",
    "flip",
    "jit_compile",
    "precision",
    "strategy",
    "devices",
)
HELP_GROUPS = {
    "Architecture": ["arc", "space", "init_from_search"],
    "Data": ["dataset", "data_dir", "download", "valid_size", "train_size"],
    "Image network": [
        "out_filters",
        "num_layers",
        "keep_prob",
        "drop_path_keep_prob",
        "aux_weight",
        "separable",
        "layer_base",
        "cell_output",
        "l2",
    ],
    "Training (image and rnn)": [
        "epochs",
        "batch_size",
        "eval_batch_size",
        "lr_max",
        "lr_min",
        "lr_t0",
        "lr_t_mul",
        "momentum",
        "grad_bound",
        "label_smoothing",
        "cutout_size",
        "pad",
        "flip",
        "seed",
        "max_nonfinite",
        "precision",
        "jit_compile",
    ],
    "Language model (rnn cells on --dataset=ptb)": LM_ONLY,
    "Run": ["output_dir", "overwrite", "dry_run", "verbose", "deterministic"],
    "Devices": ["strategy", "devices"],
}

FLAGS = flags.FLAGS


def _load_splits():
    return data.load_images(
        FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        valid_size=FLAGS.valid_size,
        download=FLAGS.download,
        train_size=FLAGS.train_size,
    )


def _check_data(train, search, space, child, shape, classes) -> None:
    """The settings that depend on the images: cutout, inheritance."""
    cli.check_cutout(train.cutout_size, FLAGS.dataset, shape)
    if search:
        inherit.check_compatible(search, space, child, shape, classes)


def _dry_run(space, arc, child, shape, classes) -> None:
    from enas_tf.child.build import build_child, inference_model
    from enas_tf.ops.flops import count_flops, count_params

    model = build_child(space, arc, child, image_shape=shape, num_classes=classes)
    twin = inference_model(space, arc, child, model)
    print(f"{space.describe()}: {space.format(arc)}")
    print(f"input {shape[0]}x{shape[1]}x{shape[2]}, {classes} classes")
    print(f"params {count_params(twin):,} (training model {count_params(model):,})")
    print(f"FLOPs {count_flops(twin):,} multiply-adds per image")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
    if not FLAGS.arc and not FLAGS.init_from_search:
        raise UserError(
            "Give the architecture with --arc, or a search run with "
            "--init_from_search (see enas-train --help)."
        )
    if not FLAGS.output_dir and not FLAGS.dry_run:
        raise UserError("Give the run directory with --output_dir.")
    search = None
    if FLAGS.init_from_search:
        search = inherit.open_search_run(FLAGS.init_from_search)
    if FLAGS.arc:
        space, arc = spaces.resolve_arc(FLAGS.arc, FLAGS.space)
    else:
        space, arc = inherit.search_arc(search)
    if space.name == "rnn" or FLAGS.dataset == "ptb":
        return _train_lm(space, arc)
    _refuse(LM_ONLY, "language models (rnn cells)")
    if space.name not in ("macro", "micro"):
        raise UserError(
            f"enas-train trains CNN architectures (macro or micro); --arc is a {space.name} cell."
        )
    child, train = _cnn_configs(search)
    child.check(space)
    train.check()
    # A standard dataset's shape is known before loading, so mismatches are
    # reported at once; users' own data is checked once loaded.
    known = data.images.IMAGE_SHAPES.get(FLAGS.dataset)
    if known:
        _check_data(train, search, space, child, known, data.images.NUM_CLASSES[FLAGS.dataset])
    if FLAGS.dry_run:
        if known:
            _dry_run(space, arc, child, known, data.images.NUM_CLASSES[FLAGS.dataset])
        else:
            splits = _load_splits()
            _check_data(train, search, space, child, splits.image_shape, splits.num_classes)
            _dry_run(space, arc, child, splits.image_shape, splits.num_classes)
        return
    rundir.check_output_dir(FLAGS.output_dir)
    # Before any other TensorFlow work (a multi-worker strategy connects to
    # the other workers here).
    strategy = cli.strategy_from_flags()
    splits = _load_splits()
    if not known:
        _check_data(train, search, space, child, splits.image_shape, splits.num_classes)
    # Imported only now: bad flags, architectures and data files are
    # reported without waiting for TensorFlow.
    from enas_tf.train.image import train_child

    print(splits.summary())
    print(f"{space.describe()}: {space.format(arc)}")
    if FLAGS.deterministic:
        enable_determinism(FLAGS.seed)
    summary = train_child(
        space,
        arc,
        child,
        train,
        splits,
        FLAGS.output_dir,
        data={
            "dataset": FLAGS.dataset,
            "valid_size": FLAGS.valid_size,
            "data_dir": FLAGS.data_dir,
            **({"train_size": FLAGS.train_size} if FLAGS.train_size else {}),
            **cli.custom_data_record(FLAGS.dataset, splits),
        },
        overwrite=FLAGS.overwrite,
        verbose=FLAGS.verbose,
        init_from_search=FLAGS.init_from_search,
        strategy=strategy,
    )
    _print_summary(summary)


def _cnn_configs(search) -> tuple[ChildConfig, TrainConfig]:
    """The child network and training settings from the flags (the cell
    output of a micro search run by default, with --init_from_search)."""
    child = ChildConfig(
        out_filters=FLAGS.out_filters,
        num_layers=FLAGS.num_layers,
        keep_prob=FLAGS.keep_prob,
        drop_path_keep_prob=FLAGS.drop_path_keep_prob,
        aux_weight=FLAGS.aux_weight,
        separable=FLAGS.separable,
        layer_base=FLAGS.layer_base,
        cell_output=FLAGS.cell_output
        or (
            search.config.supernet.cell_output
            if search is not None and search.config.space.name == "micro"
            else "loose_ends"
        ),
        l2=FLAGS.l2,
    )
    flip = FLAGS.flip if FLAGS.flip is not None else FLAGS.dataset not in NO_FLIP
    train = TrainConfig(
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        eval_batch_size=FLAGS.eval_batch_size,
        lr_max=FLAGS.lr_max,
        lr_min=FLAGS.lr_min,
        lr_t0=FLAGS.lr_t0,
        lr_t_mul=FLAGS.lr_t_mul,
        momentum=FLAGS.momentum,
        grad_bound=FLAGS.grad_bound,
        label_smoothing=FLAGS.label_smoothing,
        cutout_size=FLAGS.cutout_size,
        pad=FLAGS.pad,
        flip=flip,
        seed=FLAGS.seed,
        jit_compile=FLAGS.jit_compile,
        max_nonfinite=FLAGS.max_nonfinite,
        precision=FLAGS.precision,
    )
    return child, train


def _print_summary(summary) -> None:
    """Prints where a finished CNN run's outputs are and its accuracies."""
    out = FLAGS.output_dir
    if not summary.get("chief", True):
        print(f"test accuracy {summary['test_accuracy']:.4f}; the chief wrote {out}")
        return
    valid = summary["final_valid_accuracy"]
    print(
        f"params {summary['params']:,}  FLOPs {summary['flops']:,} multiply-adds "
        f"per image  epochs {summary['epochs']}"
    )
    if valid is not None:
        print(f"valid accuracy: final {valid:.4f}, best {summary['best_valid_accuracy']:.4f}")
    print(f"test accuracy {summary['test_accuracy']:.4f}")
    if summary["inherited"]:
        inherited = summary["inherited"]
        print(
            f"started from: {inherited['inherited_layers']} layers of "
            f"{inherited['checkpoint']} (search epoch {inherited['search_epoch']})"
        )
    print(f"model:       {os.path.join(out, 'model.keras')}")
    print(f"summary:     {os.path.join(out, 'summary.json')}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(out, 'logs')}")


def _refuse(names, what: str) -> None:
    """Raises UserError when flags of the other kind of training are given."""
    given = [f"--{n}" for n in names if FLAGS[n].present]
    if given:
        raise UserError(
            f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} only "
            f"to {what}; drop {'them' if len(given) > 1 else 'it'}."
        )


def _train_lm(space, arc) -> None:
    """Final training of an enas_lm cell on PTB (`enas_tf.train.lm`)."""
    dataset = FLAGS.dataset if FLAGS["dataset"].present else "ptb"
    if space.name != "rnn":
        raise UserError(
            f"--dataset=ptb trains language models; --arc is a {space.name} "
            f"architecture. Give an rnn cell (e.g. --arc=enas_lm_ptb, or the "
            f"best_arc.json of a --space=rnn search)."
        )
    if dataset != "ptb":
        raise UserError(
            f"--arc is an rnn cell (a language-model cell): train it with "
            f"--dataset=ptb; --dataset={dataset} is an image dataset."
        )
    _refuse(CNN_ONLY, "image networks (macro or micro)")
    values = {n: getattr(FLAGS if FLAGS[n].present else LM_DEFAULTS, n) for n in LM_FIELDS}
    config = LmTrainConfig(**values)
    config.check()
    if FLAGS.dry_run:
        from enas_tf.train.lm import describe

        print(describe(space, arc, config))
        return
    if not FLAGS.data_dir:
        raise UserError(
            "--dataset=ptb needs --data_dir: the directory holding the Penn "
            "Treebank files train.txt, valid.txt and test.txt (Mikolov's split)."
        )
    rundir.check_output_dir(FLAGS.output_dir)
    corpus = data.load_ptb(FLAGS.data_dir)
    from enas_tf.train import lm as lm_final  # TensorFlow after the checks

    print(corpus.summary())
    print(f"{space.describe()}: {space.format(arc)}")
    data_settings = {"dataset": "ptb", "data_dir": FLAGS.data_dir}
    if FLAGS.deterministic:
        enable_determinism(config.seed)
    summary = lm_final.train_lm(
        space, arc, config, corpus, FLAGS.output_dir, data=data_settings,
        overwrite=FLAGS.overwrite, verbose=FLAGS.verbose,
    )  # fmt: skip
    out, s = FLAGS.output_dir, summary
    print(f"params {s['params']:,}  epochs {s['epochs']}  steps {s['steps']}  "
          f"({s['evaluation']['weights']} weights)")  # fmt: skip
    print(f"valid perplexity {s['valid_perplexity']:.2f}  test perplexity "
          f"{s['test_perplexity']:.2f} ({s['test_targets']:,} tokens)")  # fmt: skip
    print(f"model:       {os.path.join(out, 'model.keras')}")
    print(f"summary:     {os.path.join(out, 'summary.json')}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(out, 'logs')}")


def run() -> None:
    """Console-script entry point (`enas-train`)."""
    cli.run(main, HELP_GROUPS)


if __name__ == "__main__":
    run()
