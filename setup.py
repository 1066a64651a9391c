"""Installs enas-tf: `pip install -e .` (add `[gpu]` for NVIDIA's CUDA wheels)."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "enas_tf" / "__init__.py").read_text()
).group(1)

# Console scripts: each tool in tools/ is installed as the package
# enas_tf.tools, so `enas-arc` runs tools/arc.py's run().
TOOLS = ("arc", "data", "export", "search", "train")

setup(
    name="enas-tf",
    version=VERSION,
    description=("Efficient Neural Architecture Search (ENAS) for TensorFlow 2 / Keras 3"),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        "enas_tf",
        "enas_tf.child",
        "enas_tf.configs",
        "enas_tf.controllers",
        "enas_tf.data",
        "enas_tf.export",
        "enas_tf.lm",
        "enas_tf.ops",
        "enas_tf.runtime",
        "enas_tf.search",
        "enas_tf.spaces",
        "enas_tf.strategies",
        "enas_tf.strategies.darts",
        "enas_tf.strategies.evolution",
        "enas_tf.strategies.nas",
        "enas_tf.strategies.random",
        "enas_tf.strategies.reinforce",
        "enas_tf.supernet",
        "enas_tf.train",
        "enas_tf.viz",
        "enas_tf.tools",
    ],
    package_dir={"enas_tf.tools": "tools"},
    install_requires=[
        # The standard TensorFlow wheel runs on CPU everywhere and on NVIDIA
        # GPUs once the CUDA libraries are present (the [gpu] extra).
        "tensorflow>=2.16",
        "keras>=3.0",
        "tensorflow-datasets>=4.9",
        "numpy>=1.26",
        "absl-py>=2.0",
        "tensorboard>=2.16",
        # Bundled 8x8 digits: the offline default dataset.
        "scikit-learn>=1.3",
        # Architecture drawings (enas_tf.viz.draw, `enas-arc draw`); no graphviz.
        "pillow>=9",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        # pytest runs the suite; ruff (pinned: its format changes between
        # releases) checks lint and format in CI.
        "test": ["pytest>=7", "pytest-xdist>=3.5", "ruff==0.17.6"],
    },
    entry_points={
        "console_scripts": [f"enas-{tool}=enas_tf.tools.{tool}:run" for tool in TOOLS],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
