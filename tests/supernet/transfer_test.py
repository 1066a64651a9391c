"""Tests of weight inheritance from a search run (`enas_tf.supernet.transfer`)."""

import json
import os
import shutil

import numpy as np
import pytest

from enas_tf import data, spaces
from enas_tf.child.build import build_child
from enas_tf.configs.image import ChildConfig, SearchConfig, TrainConfig
from enas_tf.errors import UserError
from enas_tf.runtime import rundir
from enas_tf.supernet.transfer import (
    load_inherited,
    open_search_run,
    search_arc,
    weights_from_search,
)
from enas_tf.testing import search_run
from enas_tf.train import image as child_training

COMMON = {"out_filters": 4, "batch_size": 256, "flip": False, "pad": 1}
SEARCHES = {
    "micro": SearchConfig.from_flat(space="micro", num_nodes=2, num_layers=3, **COMMON),
    "macro": SearchConfig.from_flat(space="macro", num_layers=4, num_ops=6, **COMMON),
}
# The search's structure; drop path and the auxiliary head have no shared
# weights and may differ.
CHILDREN = {
    "micro": ChildConfig(
        out_filters=4,
        num_layers=3,
        keep_prob=0.8,
        drop_path_keep_prob=0.9,
        aux_weight=0.4,
        cell_output="all",
    ),
    "macro": ChildConfig(out_filters=4, keep_prob=0.8),
}


@pytest.fixture(scope="module")
def digits():
    return data.load_images("digits", valid_size=100)


@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("searches")
    return {
        name: (str(root / name), search_run(str(root / name), config, digits))
        for name, config in SEARCHES.items()
    }


def _snapshot(directory):
    return {
        os.path.relpath(os.path.join(d, f), directory): (
            os.path.getsize(os.path.join(d, f)),
            os.path.getmtime(os.path.join(d, f)),
        )
        for d, _, files in os.walk(directory)
        for f in files
    }


@pytest.mark.parametrize("name", ["micro", "macro"])
def test_child_starts_with_the_supernets_function(runs, digits, name):
    run_dir, search = runs[name]
    before = _snapshot(run_dir)
    space, arc = search_arc(open_search_run(run_dir))
    child = CHILDREN[name]
    inherited = weights_from_search(
        run_dir, space, arc, child, digits.image_shape, digits.num_classes
    )
    assert inherited.epoch == 1 and inherited.checkpoint.endswith("ckpt-1")
    model = build_child(
        space, arc, child, image_shape=digits.image_shape, num_classes=digits.num_classes
    )
    fresh = load_inherited(model, inherited.weights)
    # Only the auxiliary head has no shared weights.
    assert all(n.startswith("aux") for n in fresh) and bool(fresh) == (name == "micro")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, *digits.image_shape)).astype("float32")
    outputs = model(images, training=False)
    logits = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    shared = search.net(images, arc=np.asarray(arc, np.int32), training=False)
    np.testing.assert_allclose(logits, shared, atol=1e-5, rtol=1e-5)
    assert _snapshot(run_dir) == before  # the search run is only read


def test_different_structure_lists_every_difference(runs):
    run_dir, _ = runs["micro"]
    space, arc = search_arc(open_search_run(run_dir))
    child = ChildConfig(out_filters=8, num_layers=6, layer_base=True)
    with pytest.raises(UserError) as e:
        weights_from_search(run_dir, space, arc, child, (28, 28, 1), 10)
    message = str(e.value)
    for fragment in (
        "num_layers is 6 here but 3 in the search",
        "out_filters is 8 here but 4 in the search",
        "layer_base is True here but False in the search",
        "cell_output is loose_ends here but all in the search",
        "image shape is 28x28x1 here but 8x8x1 in the search",
        "--num_layers=3 --out_filters=4 --nolayer_base --cell_output=all --dataset=digits",
        "drop --init_from_search",
    ):
        assert fragment in message, message
    assert "classes" not in message and "\n" not in message


def test_architecture_of_another_space_is_refused(runs, digits):
    run_dir, _ = runs["micro"]
    space = spaces.MicroSpace(num_nodes=3)
    with pytest.raises(UserError, match=r"searched micro\(num_nodes=2, num_ops=5\)"):
        weights_from_search(
            run_dir,
            space,
            space.random_arc(0),
            CHILDREN["micro"],
            digits.image_shape,
            digits.num_classes,
        )


def test_unusable_search_runs_are_named(runs, digits, tmp_path):
    run_dir, _ = runs["micro"]
    space, arc = search_arc(open_search_run(run_dir))
    args = (space, arc, CHILDREN["micro"], digits.image_shape, digits.num_classes)
    with pytest.raises(UserError, match="does not exist"):
        weights_from_search(str(tmp_path / "missing"), *args)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no config.json"):
        open_search_run(str(tmp_path / "empty"))
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    (train_dir / "config.json").write_text(json.dumps({"tool": "enas-train"}))
    with pytest.raises(UserError, match="of enas-train, not of enas-search"):
        open_search_run(str(train_dir))
    # A search that has neither finished an epoch nor derived.
    young = tmp_path / "young"
    young.mkdir()
    shutil.copy(os.path.join(run_dir, "config.json"), young / "config.json")
    with pytest.raises(UserError, match="has not finished an epoch"):
        weights_from_search(str(young), *args)
    with pytest.raises(UserError, match="not derived its architecture"):
        search_arc(open_search_run(str(young)))
    # Searches without a shared-weight supernet: DARTS, NAS from scratch.
    for algorithm in ("darts", "nas"):
        other = tmp_path / algorithm
        other.mkdir()
        config = json.loads((young / "config.json").read_text())
        config["search"] = SearchConfig.from_flat(algorithm=algorithm, keep_prob=1.0).to_json()
        (other / "config.json").write_text(json.dumps(config))
        with pytest.raises(UserError, match=f"--algorithm={algorithm}, which trains no"):
            open_search_run(str(other))


def test_an_unreadable_newest_checkpoint_falls_back(runs, digits, tmp_path):
    run_dir, _ = runs["micro"]
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    checkpoints = copy / "checkpoints"
    for path in checkpoints.glob("ckpt-1.*"):
        target = checkpoints / path.name.replace("ckpt-1", "ckpt-2")
        target.write_bytes(path.read_bytes()[:100])
    space, arc = search_arc(open_search_run(str(copy)))
    args = (space, arc, CHILDREN["micro"], digits.image_shape, digits.num_classes)
    assert weights_from_search(str(copy), *args).checkpoint.endswith("ckpt-1")
    for path in checkpoints.glob("ckpt-1.*"):
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="No checkpoint .* can be read"):
        weights_from_search(str(copy), *args)


def test_the_train_run_records_its_search(runs, digits, tmp_path):
    run_dir, _ = runs["micro"]
    space, arc = search_arc(open_search_run(run_dir))
    train = TrainConfig(epochs=1, batch_size=256, pad=1, flip=False)
    recorded = {"dataset": "digits", "valid_size": 100}
    config = child_training.run_config(
        space, arc, CHILDREN["micro"], train, recorded, init_from_search=run_dir
    )
    assert config["init_from_search"] == os.path.abspath(run_dir)
    # The same run without inheritance is another run (resume refused).
    out = str(tmp_path / "train")
    rundir.prepare(out, config, overwrite=False)
    with pytest.raises(UserError, match="init_from_search: '.*' -> None"):
        child_training.train_child(space, arc, CHILDREN["micro"], train, digits, out)


def test_runs_written_before_cell_output_read_as_loose_ends(runs, tmp_path):
    run_dir, _ = runs["micro"]
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    config = json.loads((old / "config.json").read_text())
    # What runs wrote before configs nested and before cell_output existed.
    flat = SearchConfig.from_json(config["search"]).flat()
    assert flat.pop("cell_output") == "all"
    config["search"] = flat
    (old / "config.json").write_text(json.dumps(config))
    assert open_search_run(str(old)).config.supernet.cell_output == "loose_ends"
    assert open_search_run(run_dir).config.supernet.cell_output == "all"
