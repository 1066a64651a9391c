"""Shared plumbing of the command-line tools (`tools/*.py`).

Tools call `run(main, groups=...)` instead of `absl.app.run(main)`. `--help`
(`-h`, `--helpshort`) then prints the tool's module docstring and its own
flags in `groups`, with defaults, and `--helpfull` adds absl's, exiting with
status 0, however the tool was started (`python tools/x.py` or the `enas-x`
console script, whose `__main__` is not the tool); TensorFlow's start-up
chatter is filtered from stderr (`enas_tf.runtime.quiet`) and absl logging
shows warnings and errors unless `--verbosity` is given. User errors, bad
flags and extra arguments print one clear paragraph on stderr and exit with
status 2, without a traceback; a run stopped by SIGINT/SIGTERM after saving
(`enas_tf.runtime.checkpoints.Stopped`) exits with 128 + the signal number; a
multi-worker run whose other worker died exits with status 1 and says to
restart every worker; anything else is a bug and keeps its traceback.
The library itself never reads flags.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence

from absl import app, flags, logging

from enas_tf.errors import UserError
from enas_tf.runtime import quiet
from enas_tf.runtime.checkpoints import Stopped

USAGE_ERROR = 2
PEER_FAILED = 1
STRATEGIES = ("default", "mirrored", "multi_worker")


def program_name() -> str:
    """The name the tool was started as (`enas-arc`, `arc.py`)."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "enas"


def fail(message: str) -> None:
    """Prints `message` as a user error and exits with status 2."""
    print(f"{program_name()}: error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def check_cutout(cutout_size: int, dataset: str, image_shape=None) -> None:
    """Raises UserError when --cutout_size exceeds the dataset's images
    (`image_shape`, known in advance for the standard datasets)."""
    from enas_tf.data.images import IMAGE_SHAPES  # pylint: disable=import-outside-toplevel

    image_shape = image_shape or IMAGE_SHAPES.get(dataset)
    if image_shape is None:
        return
    height, width = image_shape[:2]
    if cutout_size > min(height, width):
        raise UserError(
            f"--cutout_size={cutout_size} is larger than the {height}x{width} "
            f"images of {dataset}, so cutout would erase them; give at most "
            f"{min(height, width)} (0: no cutout)."
        )


def define_dataset_flag(help_text: str) -> None:
    """Defines --dataset: a standard dataset, `ptb`, `folder` (users' images
    in --data_dir) or `tfds:NAME`; checked when the flags are parsed."""
    from enas_tf.data.images import IMAGE_DATASETS, check_dataset_name  # pylint: disable=import-outside-toplevel

    def check(name: str) -> bool:
        if name != "ptb":
            try:
                check_dataset_name(name)
            except UserError as e:
                raise flags.ValidationError(f"{e} Language models: ptb.") from None
        return True

    choices = ", ".join([*IMAGE_DATASETS, "ptb", "folder", "tfds:NAME"])
    flags.DEFINE_string("dataset", "digits", f"{help_text} One of {choices}.")
    flags.register_validator("dataset", check)


def custom_data_record(dataset: str, splits) -> dict:
    """What a run directory records of users' own data besides the flags:
    the image shape and classes (known in advance for standard datasets)."""
    from enas_tf.data.images import IMAGE_SHAPES  # pylint: disable=import-outside-toplevel

    if dataset in IMAGE_SHAPES:
        return {}
    record = {"image_shape": list(splits.image_shape), "num_classes": splits.num_classes}
    if splits.class_names:
        record["class_names"] = list(splits.class_names)
    return record


def define_strategy_flags() -> None:
    """Defines --strategy and --devices (search and final training)."""
    flags.DEFINE_enum(
        "strategy",
        "default",
        list(STRATEGIES),
        "default: one device. mirrored: tf.distribute.MirroredStrategy over "
        "--devices (default: every local GPU), each step's global batch "
        "(--batch_size) split over them. multi_worker: "
        "tf.distribute.MultiWorkerMirroredStrategy over the workers of the "
        "TF_CONFIG environment variable (start the same command on each; "
        "worker 0 or the chief writes --output_dir, which every worker must "
        "see). One architecture per step on every replica.",
    )
    flags.DEFINE_list("devices", None, "Devices of --strategy=mirrored, e.g. /gpu:0,/gpu:1.")


def strategy_from_flags():
    """The `tf.distribute.Strategy` of --strategy / --devices.

    Call it before any other TensorFlow work (a multi-worker strategy must
    start the collective runtime first).
    """
    values = flags.FLAGS
    if values.devices and values.strategy != "mirrored":
        raise UserError("--devices needs --strategy=mirrored.")
    if values.strategy == "default":
        return None
    from enas_tf.runtime import distribute  # pylint: disable=import-outside-toplevel

    return distribute.make_strategy(values.strategy, values.devices)


def _peer_died(error: BaseException) -> bool:
    if "tensorflow" not in sys.modules:
        return False
    from enas_tf.runtime import distribute  # pylint: disable=import-outside-toplevel

    return distribute.peer_failure(error)


HELP_ARGS = {"--help": False, "-h": False, "-?": False, "--helpshort": False, "--helpfull": True}
WIDTH = 80


def _tool_flags(main: Callable) -> dict[str, flags.Flag]:
    """The flags the tool's module (and this module, for it) defined."""
    module = getattr(main, "__module__", None) or "__main__"
    by_module = flags.FLAGS.flags_by_module_dict()
    keys = [sys.argv[0] if module == "__main__" else module, __name__, "__main__"]
    found = {}
    for key in keys:
        for flag in by_module.get(key, []):
            found.setdefault(flag.name, flag)
    return found


def describe_flag(flag: flags.Flag) -> str:
    """One flag's help entry: name, help text and default, wrapped."""
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    text = f"{name}: {flag.help}"
    if flag.default is not None and flag.default != []:
        default = flag.default_as_str.strip("'") if flag.default_as_str else flag.default
        text += f" (default: {default})"
    return textwrap.fill(text, WIDTH, initial_indent="  ", subsequent_indent="      ")


def help_text(
    main: Callable, groups: Mapping[str, Sequence[str]] | None = None, *, full: bool = False
) -> str:
    """The tool's help: its module docstring, then its flags under the
    titles of `groups` (names not in any group last), then with `full`
    the flags of absl and the libraries."""
    module = sys.modules.get(getattr(main, "__module__", None) or "__main__")
    doc = (getattr(module, "__doc__", None) or f"{program_name()} [flags]").strip()
    parts = [doc.replace("%s", program_name())]
    own = _tool_flags(main)
    left = dict(own)
    for title, names in (groups or {}).items():
        entries = [describe_flag(left.pop(n)) for n in names if n in left]
        if entries:
            parts.append(f"{title}:\n" + "\n".join(entries))
    if left:
        title = "Other flags" if groups else "Flags"
        parts.append(f"{title}:\n" + "\n".join(describe_flag(left[n]) for n in sorted(left)))
    if full:
        shown = set(own)
        for module, listed in sorted(flags.FLAGS.flags_by_module_dict().items()):
            entries = [describe_flag(f) for f in listed if f.name not in shown]
            shown.update(f.name for f in listed)
            if entries:
                parts.append(f"Flags of {module}:\n" + "\n".join(sorted(entries)))
        parts.append(
            "Special flags:\n  --flagfile=FILE: read flags from FILE (one per line).\n"
            "  --undefok=NAMES: names of flags that may be given without being defined."
        )
    else:
        parts.append("--helpfull also lists absl's flags (--flagfile, --verbosity, ...).")
    return "\n\n".join(parts) + "\n"


def _help_request(argv: Sequence[str]) -> bool | None:
    """None, or whether the help asked for is the full one."""
    for arg in argv[1:]:
        if arg == "--":
            break
        if arg in HELP_ARGS:
            return HELP_ARGS[arg]
    return None


def _flags_parser(main: Callable, groups: Mapping[str, Sequence[str]] | None):
    def parse(argv: Sequence[str]) -> list[str]:
        full = _help_request(argv)
        if full is not None:
            sys.stdout.write(help_text(main, groups, full=full))
            sys.exit(0)
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(f"{str(e).rstrip('.')}. Run with --help to list the flags.")
            raise  # not reached

    return parse


def run(
    main: Callable[[list[str]], int | None],
    groups: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Runs `main` like `absl.app.run`, turning user errors into exit code 2
    (module docstring); `groups` titles the tool's flags in `--help`."""
    quiet.filter_stderr()

    def wrapped(argv: list[str]) -> int | None:
        if not flags.FLAGS["verbosity"].present:  # TF logs e.g. checkpoint writes at INFO
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except UserError as e:
            fail(str(e))
        except app.UsageError as e:
            fail(f"{e} Run with --help for usage.")
        except Stopped as e:  # SIGINT / SIGTERM: saved, stopped cleanly
            print(f"{program_name()}: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except Exception as e:  # noqa: BLE001 - only a dead peer is handled
            if not _peer_died(e):
                raise
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            print(
                f"{program_name()}: error: another worker of this multi-worker run "
                f"stopped ({type(e).__name__}: {first}). Nothing after the last "
                f"checkpoint was kept. Restart every worker with the same command "
                f"to resume the run.",
                file=sys.stderr,
            )
            sys.exit(PEER_FAILED)
        return None

    app.run(wrapped, flags_parser=_flags_parser(main, groups))
