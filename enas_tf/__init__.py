"""enas-tf: Efficient Neural Architecture Search (Pham et al., 2018) in TF2/Keras.

Subpackages, from the bottom layer up (each imports only from layers below
it), re-exported lazily so that `import enas_tf` stays fast and does not
import TensorFlow until a TensorFlow-backed piece is used:

- `spaces`: search spaces as data, architecture encodings, published arcs.
- `data`: datasets (digits, MNIST, Fashion-MNIST, CIFAR, PTB).
- `ops`: the op table (what each candidate op is), shared-weight ops and
  Keras blocks.
- `configs`: run settings as checked dataclasses.
- `supernet`, `child`, `lm`: shared-weight supernets, fixed child networks,
  recurrent-cell language models.
- `controllers`: the LSTM policies sampling architectures.
- `strategies`: search methods (a registry: `reinforce`, `random`, ...).
- `search`, `train`: architecture search, final training.
- `export`, `viz`: SavedModel/TFLite export, architecture drawings.
- `runtime`: checkpoints, run directories, distribution, precision.
- `errors`: `UserError` and its subclasses.
- `api`: `ArchitectureSearch`, the Keras-style entry point (search your
  arrays or tf.data datasets, inspect, build and train the best).

`enas_tf.draw` is kept as the name of `enas_tf.viz.draw`.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    name: f"enas_tf.{name}"
    for name in (
        "child",
        "configs",
        "controllers",
        "data",
        "errors",
        "export",
        "lm",
        "ops",
        "runtime",
        "search",
        "spaces",
        "strategies",
        "supernet",
        "train",
        "viz",
    )
}
_SUBMODULES["draw"] = "enas_tf.viz.draw"
_SUBMODULES["api"] = "enas_tf.api"
# Classes of the Keras-style API, at the top: `enas_tf.ArchitectureSearch`.
_API = ("ArchitectureSearch",)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name in _API:
        return getattr(importlib.import_module("enas_tf.api"), name)
    raise AttributeError(f"module 'enas_tf' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES, *_API])
