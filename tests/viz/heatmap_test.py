"""Tests of the mixing-weight heat maps (`enas_tf.viz.heatmap`)."""

import numpy as np
import pytest

from enas_tf.viz.heatmap import draw_mix


def test_heat_map_shape_range_and_shading():
    mix = np.zeros((2, 3, 4))
    mix[0, 0, 0] = 1.0  # one heavy weight
    image = draw_mix(mix, ["normal", "reduce"], ["0->2", "1->2", "0->3"], list("abcd"))
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert 0.0 <= image.min() and image.max() <= 1.0
    # The heavy square is dark blue; a light one stays near white.
    blue = np.all(np.isclose(image, [31 / 255, 119 / 255, 180 / 255], atol=1e-3), axis=-1)
    assert blue.sum() > 100
    again = draw_mix(mix, ["normal", "reduce"], ["0->2", "1->2", "0->3"], list("abcd"))
    np.testing.assert_array_equal(image, again)  # deterministic
    with pytest.raises(ValueError, match=r"Expected mix of shape \(2, 3, 3\)"):
        draw_mix(mix, ["normal", "reduce"], ["0->2", "1->2", "0->3"], list("abc"))
