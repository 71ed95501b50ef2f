"""Random boxes and feature pyramids shared by the tests of oanet_tf.ops."""

import numpy as np


RATIOS = (0.5, 1.0, 2.0)


def _random_boxes(rng, shape, image_size, min_size=2.0, max_size=40.0):
    """Random (y1, x1, y2, x2) boxes whose corners may leave the image a little."""
    size = rng.uniform(min_size, max_size, size=shape + (2,))
    corner = rng.uniform(-5.0, np.array(image_size) - 5.0, size=shape + (2,))
    return np.concatenate([corner, corner + size], axis=-1)


def _clustered_boxes(rng, batch, num, clusters=5, image_size=(100.0, 100.0)):
    """Boxes jittered around a few centres, so that NMS has overlaps to suppress."""
    centres = rng.uniform(20.0, 80.0, size=(batch, clusters, 2))
    pick = rng.integers(0, clusters, size=(batch, num))
    centre = np.take_along_axis(centres, pick[..., None], axis=1)
    centre = centre + rng.normal(0.0, 4.0, (batch, num, 2))
    half = rng.uniform(5.0, 15.0, size=(batch, num, 2))
    return np.clip(np.concatenate([centre - half, centre + half], -1), 0.0, image_size[0])


def _pyramid(rng, image=256, levels=(2, 3, 4, 5), channels=3, batch=2):
    return [rng.normal(size=(batch, image // 2 ** l, image // 2 ** l, channels))
            .astype(np.float32) for l in levels]
