"""TF Serving's REST response body, as written by oanet_tf.export.rest_json, against text
written by hand from json_tensor.cc's rules (rapidjson PrettyWriter, 4 spaces; row items'
arrays on one line; "_bytes" strings as {"b64": ...}; floats as %g with ".0" on whole ones)."""

import json

import numpy as np
import pytest

from oanet_tf.export.rest_json import columnar_body, row_body

OUTPUTS = {"png_bytes": np.array([b"\x89PNG", b"xy"], object),
           "scores": np.array([[0.2, 1.0], [3e-5, 9e6]], np.float32),
           "ok": np.array([True, False]), "ids": np.array([[1, -1], [0, 7]], np.int32)}

COLUMNAR = """{
    "outputs": {
        "ids": [
            [
                1,
                -1
            ],
            [
                0,
                7
            ]
        ],
        "ok": [
            true,
            false
        ],
        "png_bytes": [
            {
                "b64": "iVBORw=="
            },
            {
                "b64": "eHk="
            }
        ],
        "scores": [
            [
                0.2,
                1.0
            ],
            [
                3e-05,
                9e+06
            ]
        ]
    }
}"""

ROW = """{
    "predictions": [
        {
            "ids": [1, -1],
            "ok": true,
            "png_bytes": {
                "b64": "iVBORw=="
            },
            "scores": [0.2, 1.0]
        },
        {
            "ids": [0, 7],
            "ok": false,
            "png_bytes": {
                "b64": "eHk="
            },
            "scores": [3e-05, 9e+06]
        }
    ]
}"""


def test_columnar_and_row_bodies_as_tf_serving_writes_them():
    assert columnar_body(OUTPUTS) == COLUMNAR
    assert row_body(OUTPUTS) == ROW


def test_one_output_is_unnamed_and_text_stays_text():
    assert json.loads(columnar_body({"ids": np.array([1, 2])})) == {"outputs": [1, 2]}
    body = json.loads(row_body({"names": np.array([b"sky"], object)}))
    assert body == {"predictions": ["sky"]}


def test_floats_that_need_more_digits_read_back_exactly():
    value = np.float32(0.1234567)
    text = columnar_body({"x": np.array([value])})
    assert np.float32(json.loads(text)["outputs"][0]) == value


def test_row_form_needs_one_batch_size():
    with pytest.raises(ValueError, match="batch sizes"):
        row_body({"a": np.zeros(2), "b": np.zeros(3)})
