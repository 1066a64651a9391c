r"""enas-arc: validate, show, draw, convert and sample ENAS architectures.

Usage:
  enas-arc show ARC          readable rendering, one line per layer or node
  enas-arc validate ARC      check only; exit 0 if valid, 2 if not
  enas-arc draw ARC --output=FILE.png [--overwrite]
                             the architecture drawn as a graph (PNG)
  enas-arc convert ARC --to=json|string [--output=FILE]
  enas-arc random --space=S [--seed=N] [--to=json|string] [--output=FILE]
  enas-arc info --space=S    decisions, choices per decision and exact size
  enas-arc list              the published architectures

ARC is an arc string ("0 2 0 0 ..."; commas and "|" also separate), the name of
a published architecture (see `enas-arc list`), or a file holding either the
string or the JSON form. A plain string needs --space; its size (layers or
nodes) is taken from its length unless a size flag is given.

Examples:
  enas-arc show enas_micro_final
  enas-arc draw enas_micro_final --output=micro.png
  enas-arc convert --space=micro "0 2 0 0 0 4 0 1 ..." --to=json --output=arc.json
  enas-arc random --space=macro --num_layers=12 --seed=3
"""

import math
import os
import sys

if __package__ in (None, ""):  # `python tools/arc.py` from a clone
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

from enas_tf import spaces
from enas_tf.errors import ArcError
from enas_tf.runtime import cli, rundir
from enas_tf.viz import draw

COMMANDS = ("show", "validate", "draw", "convert", "random", "info", "list")
SIZE_FLAGS = ("num_layers", "num_nodes", "num_ops", "num_funcs")

flags.DEFINE_enum(
    "space",
    None,
    list(spaces.SPACES),
    "Search space of the architecture: macro, micro, rnn (enas_lm format) or "
    "rnn_legacy (the old melodyguan/enas 2D-1 format).",
)
flags.DEFINE_integer("num_layers", None, "Macro space: number of layers L.", lower_bound=1)
flags.DEFINE_integer(
    "num_nodes",
    None,
    "Micro: computed nodes per cell B; rnn: searched nodes L; rnn_legacy: "
    "nodes D including node 0.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "num_ops", None, "Macro or micro space: number of candidate ops.", lower_bound=1
)
flags.DEFINE_integer(
    "num_funcs", None, "RNN spaces: number of candidate activations.", lower_bound=1
)
flags.DEFINE_enum("to", "string", ["string", "json"], "Output form of `convert` and `random`.")
flags.DEFINE_string(
    "output",
    None,
    "Write the converted or sampled architecture, or the drawing (a .png, "
    "required by `draw`), to this file.",
)
flags.DEFINE_bool("overwrite", False, "Allow --output to replace an existing file.")
flags.DEFINE_integer("seed", None, "Seed of `random` (default: fresh entropy).")

FLAGS = flags.FLAGS


def _size_config() -> dict[str, int]:
    return {k: getattr(FLAGS, k) for k in SIZE_FLAGS if getattr(FLAGS, k) is not None}


def _space_from_flags() -> spaces.SearchSpace:
    if FLAGS.space is None:
        raise ArcError("Give the search space with --space (macro, micro, rnn, rnn_legacy).")
    return spaces.get_space(FLAGS.space, **_size_config())


def _emit(space: spaces.SearchSpace, arc: spaces.Arc) -> None:
    if FLAGS.to == "json":
        text = spaces.json_text(space, arc)
    else:
        text = space.format(arc) + "\n"
    if FLAGS.output:
        rundir.write_text_atomic(FLAGS.output, text, overwrite=FLAGS.overwrite)
        print(f"wrote {FLAGS.output}")
    else:
        sys.stdout.write(text)


def _info(space: spaces.SearchSpace) -> None:
    print(f"space      {space.describe()}")
    print(f"layout     {space.layout}")
    print(f"decisions  {space.num_decisions}")
    size = space.size()
    log10 = math.log10(size)
    approx = f"{10 ** (log10 % 1):.3g}e+{int(log10):02d}" if log10 >= 300 else f"{float(size):.3g}"
    exact = str(size) if log10 < 4000 else f"{int(log10) + 1} digits"  # str() limit
    print(f"size       {exact} (~{approx})")
    width = max(len(n) for n in space.decision_names)
    for i, (name, n) in enumerate(zip(space.decision_names, space.choices_per_decision)):
        print(f"  {i:4d}  {name:<{width}}  {n} choices")


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in COMMANDS:
        got = f" (received {argv[1]!r})" if len(argv) > 1 else ""
        raise app.UsageError(f"Give a command: {', '.join(COMMANDS)}{got}.")
    command, rest = argv[1], " ".join(argv[2:])
    needs_arc = command in ("show", "validate", "draw", "convert")
    if needs_arc and not rest.strip():
        raise app.UsageError(f"`{command}` needs an architecture (ARC).")
    if not needs_arc and rest.strip():
        raise app.UsageError(f"`{command}` takes no architecture; received {rest!r}.")
    if command == "draw" and not FLAGS.output:
        raise app.UsageError("`draw` needs the image's path: --output=FILE.png.")
    if command == "draw" and not FLAGS.output.lower().endswith(".png"):
        raise app.UsageError(
            f"`draw` writes a PNG image; give --output a .png name (received {FLAGS.output!r})."
        )

    if command == "list":
        for name, entry in spaces.archive.PUBLISHED.items():
            args = ", ".join(f"{k}={v}" for k, v in entry.config.items())
            print(f"{name:<18} {entry.space}({args})  {entry.source}")
    elif command == "info":
        _info(_space_from_flags())
    elif command == "random":
        space = _space_from_flags()
        _emit(space, space.random_arc(FLAGS.seed))
    else:
        space, arc = spaces.resolve_arc(rest, FLAGS.space, **_size_config())
        if command == "validate":
            print(f"valid {space.describe()} architecture")
        elif command == "draw":
            draw.write_drawing(FLAGS.output, space, arc, overwrite=FLAGS.overwrite)
            print(f"wrote {FLAGS.output}")
        elif command == "convert":
            _emit(space, arc)
        else:
            print(f"# {space.describe()}")
            print(f"# arc: {space.format(arc)}")
            print(space.render(arc))


def run() -> None:
    """Console-script entry point (`enas-arc`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
