"""Architecture drawings: valid, legible-sized, deterministic PNGs."""

import io
import time

import numpy as np
import pytest
from PIL import Image

from enas_tf import spaces
from enas_tf.errors import ArcError, UserError
from enas_tf.spaces import archive
from enas_tf.viz import draw

SPACES = [
    ("macro", {"num_layers": 12}),
    ("micro", {"num_nodes": 5}),
    ("rnn", {"num_nodes": 9}),
    ("rnn_legacy", {"num_nodes": 12}),
    ("macro", {"num_layers": 1}),
    ("micro", {"num_nodes": 1}),
    ("rnn", {"num_nodes": 1}),
    ("rnn_legacy", {"num_nodes": 1}),
]


def _decode(png):
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def _check_drawing(png):
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = _decode(png)
    assert image.format == "PNG" and image.mode == "RGB"
    width, height = image.size
    assert 100 <= width <= 2500 and 100 <= height <= 2500, image.size
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 1  # None: more than 65536
    return image


@pytest.mark.parametrize("name", sorted(archive.PUBLISHED))
def test_published_architectures_draw(name):
    space, arc = spaces.load_arc(name)
    image = _check_drawing(draw.draw_arc(space, arc))
    array = draw.draw_arc_array(space, arc)
    assert array.dtype == np.uint8
    assert array.shape == (image.height, image.width, 3)
    np.testing.assert_array_equal(array, np.asarray(image))


def test_largest_published_architecture_is_fast():
    space, arc = spaces.load_arc("enas_macro_final")
    draw.draw_arc(space, arc)  # warm up the font
    start = time.perf_counter()
    draw.draw_arc(space, arc)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("name, config", SPACES)
def test_random_arcs_draw(name, config):
    space = spaces.get_space(name, **config)
    for seed in range(3):
        _check_drawing(draw.draw_arc(space, space.random_arc(seed)))


@pytest.mark.parametrize("name, config", SPACES[:4])
def test_different_arcs_give_different_images(name, config):
    space = spaces.get_space(name, **config)
    drawings = {draw.draw_arc(space, space.random_arc(seed)) for seed in range(4)}
    assert len(drawings) == 4


@pytest.mark.parametrize("name", sorted(archive.PUBLISHED))
def test_drawing_is_deterministic(name):
    space, arc = spaces.load_arc(name)
    assert draw.draw_arc(space, arc) == draw.draw_arc(space, list(arc))


def test_image_grows_with_the_architecture():
    small = draw.draw_arc_array(*spaces.load_arc("enas_lm_ptb"))
    space = spaces.get_space("rnn", num_nodes=16)
    chain = [v for k in range(16) for v in (k, 0)]  # node k reads node k - 1
    large = draw.draw_arc_array(space, chain)
    assert large.shape[0] > small.shape[0]


def test_invalid_arc_is_an_arc_error():
    space = spaces.get_space("micro", num_nodes=2)
    with pytest.raises(ArcError, match="expected 16 integers"):
        draw.draw_arc(space, [0, 1, 2])


def test_write_drawing(tmp_path):
    space, arc = spaces.load_arc("enas_micro_final")
    path = tmp_path / "sub" / "micro.png"
    draw.write_drawing(str(path), space, arc)
    assert path.read_bytes() == draw.draw_arc(space, arc)
    with pytest.raises(UserError, match="already exists"):
        draw.write_drawing(str(path), *spaces.load_arc("enas_lm_ptb"))
    assert path.read_bytes() == draw.draw_arc(space, arc)
    draw.write_drawing(str(path), *spaces.load_arc("enas_lm_ptb"), overwrite=True)
    assert _decode(path.read_bytes()).size != _decode(draw.draw_arc(space, arc)).size
    assert sorted(p.name for p in path.parent.iterdir()) == ["micro.png"]
