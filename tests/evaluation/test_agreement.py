"""prediction_agreement on a hand-made pair of 4x4 predictions."""

import numpy as np
import pytest

from oanet_tf.evaluation.agreement import category_map, prediction_agreement

PERSON, TIE, SKY = 1, 2, 10


def test_hand_case():
    # Reference: a person (id 5) in the left half, sky (id 9) in the right half.
    reference = np.array([[5, 5, 9, 9]] * 4)
    ref_segments = [{"id": 5, "category_id": PERSON}, {"id": 9, "category_id": SKY}]
    # Other: the person one column wider (3 of 4 rows), a tie where the sky's top row was,
    # other segment ids throughout.
    other = np.array([[7, 7, 3, 3],
                      [7, 7, 7, 1],
                      [7, 7, 7, 1],
                      [7, 7, 7, 1]])
    other_segments = [{"id": 7, "category_id": PERSON}, {"id": 1, "category_id": SKY},
                      {"id": 3, "category_id": TIE}]
    found = prediction_agreement((reference, ref_segments), (other, other_segments))
    # Differing pixels: 2 tie pixels in row 0 and 3 person pixels in column 2: 5 of 16.
    assert found["pixels"] == pytest.approx(11 / 16)
    # Person: 8 pixels vs 11, intersection 8 -> 8/11; sky: 8 pixels vs 3, intersection 3.
    assert found["segment_ious"] == pytest.approx([8 / 11, 3 / 8])


def test_unmatched_category_and_void():
    reference = np.array([[5, 0], [0, 0]])
    other = np.zeros((2, 2), np.int64)
    found = prediction_agreement((reference, [{"id": 5, "category_id": TIE}]), (other, []))
    assert found == {"pixels": 0.75, "segment_ious": [0.0]}
    np.testing.assert_array_equal(category_map(reference, [{"id": 5, "category_id": TIE}]),
                                  [[TIE, 0], [0, 0]])
    with pytest.raises(ValueError, match="different sizes"):
        prediction_agreement((reference, []), (np.zeros((3, 2)), []))
