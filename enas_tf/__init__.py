"""enas-tf: Efficient Neural Architecture Search (Pham et al., 2018) in TF2/Keras.

Public API, re-exported lazily so that `import enas_tf` stays fast and does not
import TensorFlow until a TensorFlow-backed piece is used:

- `enas_tf.spaces`: search spaces, architecture encodings, published arcs.
- `enas_tf.data`: datasets (digits, MNIST, Fashion-MNIST, CIFAR, PTB).
- `enas_tf.draw`: architecture drawings as PNG images.
- `enas_tf.errors`: `UserError` and its subclasses.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("data", "draw", "errors", "spaces")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"enas_tf.{name}")
    raise AttributeError(f"module 'enas_tf' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES])
