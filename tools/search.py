r"""enas-search: search an architecture with ENAS (or another strategy).

Trains a shared-weight supernet and an LSTM controller alternately (one child
epoch, then one controller phase), then derives the best architecture: it
samples --derive_samples architectures, scores each on the whole validation
split with the shared weights and writes best_arc.txt, best_arc.json and
candidates.json to --output_dir. Train the result from scratch with
`enas-train --arc=OUTPUT_DIR/best_arc.json`. Rerunning with the same
--output_dir resumes after the last finished epoch.

--space=micro or macro searches CNNs on an image dataset (rewards:
validation accuracy); --space=rnn searches enas_lm recurrent cells on
--dataset=ptb (the default with --space=rnn; rewards: 80 / validation
perplexity) with --data_dir holding train.txt, valid.txt and test.txt.
Flags shared by both take the enas_lm defaults with --space=rnn unless given
(the help shows them as "rnn: ...").

Examples:
  enas-search --flagfile=flags/quickstart.flags --output_dir=runs/q/search
  enas-search --flagfile=flags/cifar10_micro_search.flags --data_dir=~/cifar \
      --output_dir=runs/micro_search
  enas-search --flagfile=flags/quickstart.flags --algorithm=random \
      --output_dir=runs/q/random
  enas-search --flagfile=flags/ptb_search.flags --data_dir=~/ptb \
      --output_dir=runs/ptb_search
"""

import dataclasses
import os
import sys

if __package__ in (None, ""):  # `python tools/search.py` from a clone
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging

from enas_tf import data, strategies
from enas_tf.configs import lm as config_lm
from enas_tf.configs.image import CELL_OUTPUTS, REWARD_BN, SearchConfig
from enas_tf.configs.lm import LmSearchConfig
from enas_tf.errors import UserError
from enas_tf.runtime import cli, precision, rundir
from enas_tf.runtime.checkpoints import enable_determinism

NO_FLIP = ("digits", "mnist", "fashion_mnist")
DEFAULTS, LM_DEFAULTS = SearchConfig(), LmSearchConfig()


def _strategy_settings() -> dict[str, dict[str, dataclasses.Field]]:
    """Flag name -> {algorithm: its settings field} over every strategy's
    `Config` (strategies may share a name)."""
    found: dict[str, dict[str, dataclasses.Field]] = {}
    for name in strategies.names():
        for field in dataclasses.fields(strategies.config_class(name)):
            found.setdefault(field.name, {})[name] = field
    return found


# Each strategy's own settings are flags too; they apply to its algorithm.
STRATEGY_FLAGS = _strategy_settings()
CNN_FIELDS = [n for n in DEFAULTS.flat() if n not in STRATEGY_FLAGS]
LM_FIELDS = [n for n in LM_DEFAULTS.flat() if n not in STRATEGY_FLAGS]
# Flags of one kind of search only; giving them to the other is an error.
CNN_ONLY = [n for n in CNN_FIELDS if n not in LM_FIELDS] + [
    "valid_size",
    "train_size",
    "download",
    "strategy",
    "devices",
]
LM_ONLY = [n for n in LM_FIELDS if n not in CNN_FIELDS]
HELP = {
    "space": "Search space: micro (cells), macro (whole network) or rnn "
    "(enas_lm recurrent cells, on --dataset=ptb).",
    "num_nodes": "Micro: computed nodes per cell (B); rnn: searched nodes L.",
    "num_layers": "Micro: normal cells L of the supernet; macro: layers.",
    "num_ops": "Candidate ops (micro 5, macro 6).",
    "out_filters": "Channels of the supernet's first stage.",
    "keep_prob": "Keep probability of the dropout before the classifier.",
    "epochs": "Search epochs.",
    "batch_size": "Child batch size (also the reward minibatch).",
    "eval_batch_size": "Batch size when scoring candidates on the validation split.",
    "lr_max": "Maximum child learning rate.",
    "lr_min": "Minimum child learning rate.",
    "lr_t0": "Epochs of the first cosine cycle.",
    "lr_t_mul": "Each cosine cycle is this many times longer.",
    "momentum": "Child Nesterov momentum.",
    "l2": "L2 weight on the shared weights.",
    "grad_bound": "Global-norm gradient clipping of the child (0: none).",
    "algorithm": "Search strategy: "
    + "; ".join(f"{name}: {text}" for name, text in strategies.describe().items())
    + " (--controller is an alias). Its own settings are the flags marked with its name.",
    "controller_steps": "Strategy (controller) updates per epoch.",
    "num_aggregate": "Sampled architectures rewarded per update.",
    "cell_output": "Micro: the supernet's cell output: all (every computed node "
    "concatenated; the shared weights learn far better) or loose_ends (the paper's "
    "final cell). enas-train --init_from_search takes the search's.",
    "reward_bn": "Batch norm when scoring rewards and candidates: batch (the batch's "
    "statistics, as the original search), recalibrate (the architecture's moving "
    "statistics re-estimated on --recalibrate_batches training batches first) or "
    "moving (shared moving averages, which mix architectures).",
    "recalibrate_batches": "Training batches that re-estimate batch-norm "
    "statistics with --reward_bn=recalibrate.",
    "log_arcs": "Architectures sampled and shown per epoch.",
    "derive_samples": "Architectures sampled and scored at the end.",
    "flip": "Random horizontal flips (default: on, off for digit datasets).",
    "pad": "Zero padding before the random crop.",
    "cutout_size": "Cutout square side (0: none).",
    "seed": "Seed of everything random.",
    "max_nonfinite": "Child steps in a row with a NaN or Inf loss or gradient "
    "(each skipped) that stop the search with an error (0: never).",
    "precision": "Supernet compute dtype: float32, mixed_bfloat16 (CPU, TPU) or "
    "mixed_float16 (GPU; dynamic loss scaling); the controller stays float32.",
}
CHOICES = {
    "space": ["micro", "macro", "rnn"],
    "algorithm": list(strategies.names()),
    "reward_bn": list(REWARD_BN),
    "cell_output": list(CELL_OUTPUTS),
    "precision": list(precision.PRECISIONS),
}


def _define(name: str, default, text: str, choices=None) -> None:
    """A flag of the type of `default` (an enum for CHOICES or `choices`)."""
    if name == "flip":
        flags.DEFINE_bool("flip", None, text)
    elif choices or name in CHOICES:
        flags.DEFINE_enum(name, default, list(choices or CHOICES[name]), text)
    elif isinstance(default, bool):
        flags.DEFINE_bool(name, default, text)
    elif isinstance(default, int):
        flags.DEFINE_integer(name, default, text)
    elif isinstance(default, str):
        flags.DEFINE_string(name, default, text)
    else:
        flags.DEFINE_float(name, default, text)


def _rnn_note(text: str, default, lm_default) -> str:
    """`text` with the enas_lm default when it differs."""
    if lm_default == default:
        return text
    return text.rstrip(".") + f" (rnn: {lm_default:g})."


for name in CNN_FIELDS + LM_ONLY:
    cnn, lm = DEFAULTS.flat(), LM_DEFAULTS.flat()
    default = cnn[name] if name in cnn else lm[name]
    text = HELP.get(name) or config_lm.HELP[name]
    if name in cnn and name in lm and name != "space":
        text = _rnn_note(text, default, lm[name])
    _define(name, default, text)
for name, owners in STRATEGY_FLAGS.items():
    algorithm, field = next(iter(owners.items()))
    default = getattr(strategies.default_config(algorithm, "image"), name)
    text = field.metadata.get("help", name).rstrip(".")
    text += f" [--algorithm={'|'.join(owners)}]."
    lm_default = getattr(strategies.default_config(algorithm, "lm"), name)
    _define(name, default, _rnn_note(text, default, lm_default), field.metadata.get("choices"))
# The flag's name before strategies other than ENAS's controller existed.
flags.DEFINE_alias("controller", "algorithm")
cli.define_dataset_flag("Dataset (default: digits; ptb with --space=rnn).")
flags.DEFINE_string(
    "data_dir",
    None,
    "Directory with the official dataset files (ptb: train.txt, valid.txt, test.txt).",
)
flags.DEFINE_bool("download", False, "Let tensorflow-datasets download the data.")
flags.DEFINE_integer(
    "valid_size",
    None,
    "Training images held out for rewards (default: 5000, 360 for digits).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "train_size",
    None,
    "Search on only this many training images (a fixed random "
    "subset, the same in every run; default: all): a search that fits a time budget.",
    lower_bound=1,
)
flags.DEFINE_string("output_dir", None, "Run directory (resumed when it exists).")
flags.DEFINE_bool("overwrite", False, "Replace an incompatible run in --output_dir.")
flags.DEFINE_integer("verbose", 1, "1: a progress bar per child phase; 0: quiet.")
cli.define_strategy_flags()
flags.DEFINE_bool(
    "deterministic",
    False,
    "Deterministic TensorFlow ops (and seeded RNGs): a run "
    "killed and resumed computes exactly what an uninterrupted run does (some GPU "
    "kernels get slower).",
)
flags.DEFINE_bool(
    "jit_compile",
    False,
    "Compile the child step with XLA: refused, XLA cannot "
    "compile the supernets' gradient (enas-train --jit_compile can).",
)

FLAGS = flags.FLAGS


def _help_groups() -> dict[str, list[str]]:
    """--help's groups: the search configs' sections, each strategy's
    settings, the data and the run."""
    cnn, lm = DEFAULTS.paths(), LM_DEFAULTS.paths()

    def section(name):
        found = [n for n, path in {**cnn, **lm}.items() if path[0] == name and len(path) == 2]
        return list(dict.fromkeys(found))

    data = ["dataset", "data_dir", "download", "valid_size", "train_size"]
    augment = ["flip", "pad", "cutout_size"]
    groups = {
        "Data": data + augment,
        "Search space": section("space"),
        "Supernet (shared weights)": section("supernet") + ["precision"],
        "Optimiser of the shared weights": section("optimizer"),
        "Search loop": ["algorithm", "controller"]
        + [n for n, p in {**cnn, **lm}.items() if len(p) == 1 and n not in data + augment],
    }
    # A group per set of strategies sharing settings (nas has reinforce's
    # controller settings, nas and evolution the from-scratch ones).
    for name, owners in STRATEGY_FLAGS.items():
        names = list(owners)
        title = f"Strategy {names[0]}" if len(names) == 1 else f"Strategies {', '.join(names)}"
        groups.setdefault(f"{title} (--algorithm={'|'.join(names)})", []).append(name)
    groups["Run"] = ["output_dir", "overwrite", "verbose", "deterministic", "jit_compile"]
    groups["Devices"] = ["strategy", "devices"]
    return groups


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
    if FLAGS.jit_compile:  # any space; before anything is read or written
        precision.refuse_search_jit_compile()
    if not FLAGS.output_dir:
        raise UserError("Give the run directory with --output_dir.")
    if FLAGS.space == "rnn" or FLAGS.dataset == "ptb":
        return _search_lm()
    _refuse(LM_ONLY, "language-model searches (--space=rnn)")
    values = {name: getattr(FLAGS, name) for name in CNN_FIELDS}
    if values["flip"] is None:
        values["flip"] = FLAGS.dataset not in NO_FLIP
    config = SearchConfig.from_flat({**values, **_strategy_values()})
    config.check()
    if getattr(config.strategy, "from_scratch", False) and FLAGS.strategy != "default":
        raise UserError(
            f"--algorithm={config.algorithm} trains each child on one device of its own "
            f"process (--parallel_children at once); drop --strategy/--devices."
        )
    if getattr(config.strategy, "gradient_based", False) and FLAGS.strategy != "default":
        raise UserError("--algorithm=darts runs on one device here; drop --strategy/--devices.")
    cli.check_cutout(config.cutout_size, FLAGS.dataset)
    rundir.check_output_dir(FLAGS.output_dir)
    # Before any other TensorFlow work (a multi-worker strategy connects to
    # the other workers here).
    strategy = cli.strategy_from_flags()
    splits = data.load_images(
        FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        valid_size=FLAGS.valid_size,
        download=FLAGS.download,
        train_size=FLAGS.train_size,
    )
    cli.check_cutout(config.cutout_size, FLAGS.dataset, splits.image_shape)
    print(splits.summary())
    print(f"searching {config.search_space().describe()} with {config.algorithm}")
    from enas_tf.search.image import make_search

    if FLAGS.deterministic:
        enable_determinism(config.seed)

    search = make_search(
        config,
        splits,
        FLAGS.output_dir,
        overwrite=FLAGS.overwrite,
        verbose=FLAGS.verbose,
        strategy=strategy,
        data={
            "dataset": FLAGS.dataset,
            "valid_size": len(splits.valid_images),
            "data_dir": FLAGS.data_dir,
            **({"train_size": FLAGS.train_size} if FLAGS.train_size else {}),
            **cli.custom_data_record(FLAGS.dataset, splits),
        },
    )
    result = search.run()
    how = {
        "scratch": "trained from scratch",
        "one_hot": "with the relaxed network's weights, one-hot (DARTS: retrain it)",
    }.get(result.get("evaluation"), "with shared weights")
    _report(result, f"valid accuracy {result['valid_accuracy']:.4f} {how}")


def _refuse(names: list[str], what: str) -> None:
    """Raises UserError when a flag of the other kind of search is given."""
    given = [f"--{n}" for n in names if FLAGS[n].present]
    if given:
        raise UserError(
            f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} only "
            f"to {what}; drop {'them' if len(given) > 1 else 'it'}."
        )


def _strategy_values() -> dict:
    """The settings flags given for --algorithm's strategy (the others take
    its defaults for the kind of search); flags of other strategies are
    ignored with a warning, so one flag file serves every algorithm."""
    given = [name for name in STRATEGY_FLAGS if FLAGS[name].present]
    ignored = [f"--{n}" for n in given if FLAGS.algorithm not in STRATEGY_FLAGS[n]]
    if ignored:
        logging.warning(
            "%s %s not apply to --algorithm=%s; ignored.",
            ", ".join(ignored),
            "do" if len(ignored) > 1 else "does",
            FLAGS.algorithm,
        )
    return {n: FLAGS[n].value for n in given if FLAGS.algorithm in STRATEGY_FLAGS[n]}


def _search_lm() -> None:
    dataset = FLAGS.dataset if FLAGS["dataset"].present else "ptb"
    if FLAGS.space != "rnn":
        raise UserError(
            f"--dataset=ptb is a language-modelling corpus: search it with "
            f"--space=rnn (received --space={FLAGS.space})."
        )
    if dataset != "ptb":
        raise UserError(
            f"--space=rnn searches recurrent cells of a language model and needs "
            f"--dataset=ptb; --dataset={dataset} is an image dataset."
        )
    _refuse(CNN_ONLY, "image searches (--space=micro or macro)")
    lm_defaults = LM_DEFAULTS.flat()
    values = {n: FLAGS[n].value if FLAGS[n].present else lm_defaults[n] for n in LM_FIELDS}
    config = LmSearchConfig.from_flat({**values, **_strategy_values()})
    config.check()
    if not FLAGS.data_dir:
        raise UserError(
            "--dataset=ptb needs --data_dir: the directory holding the Penn "
            "Treebank files train.txt, valid.txt and test.txt (Mikolov's split)."
        )
    rundir.check_output_dir(FLAGS.output_dir)
    corpus = data.load_ptb(FLAGS.data_dir)
    print(corpus.summary())
    print(f"searching {config.search_space().describe()} with {config.algorithm}")
    # TensorFlow after the checks.
    if getattr(config.strategy, "gradient_based", False):
        from enas_tf.search.lm_darts import LmDartsSearch as LmSearch
    else:
        from enas_tf.search.lm import LmSearch

    if FLAGS.deterministic:
        enable_determinism(config.seed)

    search = LmSearch(
        config,
        corpus,
        FLAGS.output_dir,
        overwrite=FLAGS.overwrite,
        verbose=FLAGS.verbose,
        data={"dataset": "ptb", "data_dir": FLAGS.data_dir},
    )
    result = search.run()
    how = "with shared weights"
    if result.get("evaluation") == "one_hot":
        how = "with the relaxed model's weights, one-hot (DARTS: retrain it)"
    _report(result, f"valid perplexity {result['valid_perplexity']:.2f} {how}")


def _report(result: dict, score: str) -> None:
    """Prints where the derived architecture and the logs are."""
    out = FLAGS.output_dir
    print(f"best architecture ({score}, {result['candidates']} candidates): {result['best_arc']}")
    if not result.get("chief", True):
        print(f"the chief wrote {out}")
        return
    print(f"architecture: {os.path.join(out, 'best_arc.json')} (and best_arc.txt)")
    print(f"candidates:   {os.path.join(out, 'candidates.json')}")
    if result.get("evaluation") == "scratch":
        print(f"children:     {os.path.join(out, 'children.jsonl')} (every trained child)")
    print(f"TensorBoard:  tensorboard --logdir {os.path.join(out, 'logs')}")


def run() -> None:
    """Console-script entry point (`enas-search`)."""
    cli.run(main, _help_groups())


if __name__ == "__main__":
    run()
