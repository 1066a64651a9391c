"""Distribution strategies for the search and the final training.

`make_strategy(name, devices)` turns the `--strategy`/`--devices` flags into
a `tf.distribute.Strategy`:
  default:  the current strategy (one device);
  mirrored: `tf.distribute.MirroredStrategy`, synchronous data parallelism
            over the devices of one machine.
"""

from __future__ import annotations

import tensorflow as tf

from enas_tf.errors import UserError

# Collective group keys of successive mirrored strategies are this far apart.
_KEY_SPACING = 100_000


def make_strategy(name: str = "default", devices: list[str] | None = None):
    """The `tf.distribute.Strategy` called `name`.

    Args:
      name: "default" (the current strategy: one device) or "mirrored"
        (synchronous data parallelism on one machine).
      devices: for "mirrored", the devices (default: every local GPU, or
        the CPU when there is none).

    Raises:
      UserError: for an unknown name or device.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name != "mirrored":
        raise UserError(f"Unknown strategy {name!r}; use default or mirrored.")

    def short(name):  # "/job:x/.../device:GPU:1", "/gpu:1" -> "gpu:1"
        return ":".join(name.lower().split(":")[-2:]).rsplit("/", 1)[-1]

    known = {short(d.name) for d in tf.config.list_logical_devices()}
    unknown = [d for d in devices or () if short(d) not in known]
    if unknown:
        raise UserError(
            f"Unknown device(s) {', '.join(unknown)} in --devices; this machine "
            f"has {', '.join('/' + d for d in sorted(known))}.")
    return mirrored_strategy(devices)


def mirrored_strategy(devices: list[str] | None = None):
    """A `tf.distribute.MirroredStrategy` with collective keys of its own.

    Every `MirroredStrategy` of a process numbers its collective ops from
    the same group and instance keys, and the runtime remembers an
    instance's tensor shape by those keys: the second strategy of a process
    (a notebook, a test session, a search followed by a training) fails
    with "Shape mismatch in the collective instance ...". Moving each new
    strategy's keys to a range of its own (what TensorFlow's own tests do)
    keeps them apart.

    Args:
      devices: the devices (default: every local GPU, or the CPU when there
        is none).
    """
    cls = tf.distribute.MirroredStrategy
    if hasattr(cls, "_collective_key_base"):
        cls._collective_key_base += _KEY_SPACING
    return cls(devices or None)
