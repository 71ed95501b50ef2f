"""bfloat16 inference: a trained synthetic model (tests/fixtures/trained_small) exported with
`--precision bfloat16` serves, from a fresh process, the segments of the float32 model, to
the agreement measured on the demo model; the graph really computes in bfloat16; the layers
of `load_trained_model(precision="bfloat16")` carry the mixed policy, but for the four that
config.DECISION_LAYER_DTYPE keeps in float32."""

from __future__ import annotations

import contextlib
import io
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tests.export.serving import serving_results, start_serving

from oanet_tf.__main__ import main as cli_main
from oanet_tf.config import DECISION_LAYER_DTYPE
from oanet_tf.errors import OANetError
from oanet_tf.evaluation.agreement import prediction_agreement
from oanet_tf.export import saved_model as export_lib
from oanet_tf.inference.image_predictor import ImagePredictor
from oanet_tf.inference.postprocessor import image_segments
from oanet_tf.inference.trained_model import load_trained_model
from tests.tiny_model import synthetic_val_images

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "trained_small")
NUM_IMAGES = 16
IMAGES_SEED = 7  # not the fixture's training data (seed 0)
SUBPROCESS_SECONDS = 300
# Measured by scripts/precision_check.py on the demo model (50 val images,
# docs/precision.md): bfloat16 gave float32's category to 99.83% of the pixels (worst image 97.5%)
# and found 99.7% of float32's segments again at IoU >= 0.5; float32 on +-0.5 grey-level
# input noise: 99.86-99.98%, worst image 97.6%, 99.5-100%. The bounds sit below the worst
# image and the share bfloat16 reached there.
MIN_IMAGE_PIXELS = 0.90
MIN_SEGMENTS_FOUND = 0.95
MATCH_IOU = 0.5
MIN_SCORE_DIFFERENCE = 1e-4  # a real bfloat16 run moves some score at least this much
BFLOAT16 = 14  # types.proto's DT_BFLOAT16
# The layers DECISION_LAYER_DTYPE keeps in float32, by name.
RPN_FLOAT32_LAYERS = ("objectness", "deltas")
BOX_FLOAT32_LAYERS = ("class_logits", "box_deltas")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list:
    return synthetic_val_images(str(tmp_path_factory.mktemp("synthetic")), NUM_IMAGES,
                                IMAGES_SEED)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    base = str(tmp_path_factory.mktemp("exports"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli_main(["export", "--model-dir", FIXTURE, "--export-dir", base,
                         "--precision", "bfloat16"]) == 0
    return os.path.join(base, "1"), printed.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory, exported, images):
    """bfloat16 outputs from the fresh process; float32's, in this process meanwhile."""
    work = str(tmp_path_factory.mktemp("served"))
    calls = [{"name": "encoded", "signature": export_lib.IMAGES_SIGNATURE, "files": images}]
    process = start_serving(exported[0], calls, work)
    try:
        trained = load_trained_model(FIXTURE)
        config = trained.config
        predictor = ImagePredictor(trained.model, trained.categories, config.data, config.eval,
                                   config.export.max_image_side)
        encoded = [open(path, "rb").read() for path in images]
        reference = {k: v.numpy() for k, v in predictor.from_encoded(tf.constant(encoded)).items()}
        outputs, errors = serving_results(process, work, calls, SUBPROCESS_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not errors
    return reference, outputs["encoded"]


def test_bfloat16_export_serves_the_float32_segments(served, exported):
    reference, bfloat16 = served
    assert "(bfloat16: as requested)" in exported[1]
    pixels, ious = [], []
    for index in range(NUM_IMAGES):
        expected = image_segments(reference, index)
        # Not vacuous: float32 draws things and stuff in every image.
        is_thing = reference["is_thing"][index, :len(expected[1])]
        assert is_thing.any() and not is_thing.all(), index
        found = prediction_agreement(expected, image_segments(bfloat16, index))
        pixels.append(found["pixels"])
        ious += found["segment_ious"]
    found_share = float(np.mean(np.asarray(ious) >= MATCH_IOU))
    print(f"bfloat16 vs float32 over {NUM_IMAGES} images: same-category pixels "
          f"{np.mean(pixels):.4f} (worst {min(pixels):.4f}), segments found {found_share:.3f} "
          f"of {len(ious)}")
    assert min(pixels) >= MIN_IMAGE_PIXELS
    assert found_share >= MIN_SEGMENTS_FOUND
    # The export did compute in bfloat16: the scores are not float32's.
    differences = np.abs(reference["detection_scores"] - bfloat16["detection_scores"])
    assert differences.max() >= MIN_SCORE_DIFFERENCE


def test_the_exported_graph_computes_in_bfloat16(exported):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(exported[0], "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    convolutions = [node for function in saved_model.meta_graphs[0].graph_def.library.function
                    for node in function.node_def if node.op == "Conv2D"]
    in_float32 = {node.name for node in convolutions if node.attr["T"].type != BFLOAT16}
    assert 0 < len(in_float32) < len(convolutions)
    # Only the RPN's objectness and deltas (DECISION_LAYER_DTYPE) convolve in float32.
    assert all(any(name in node for name in RPN_FLOAT32_LAYERS) for node in in_float32)


def test_loaded_layers_carry_the_mixed_policy_and_the_global_one_is_restored():
    before = keras.mixed_precision.global_policy().name
    model = load_trained_model(FIXTURE, precision="bfloat16").model
    float32 = {layer.name for layer in model._flatten_layers(include_self=True, recursive=True)
               if layer.dtype_policy.name != "mixed_bfloat16"}
    assert float32 == {*RPN_FLOAT32_LAYERS, *BOX_FLOAT32_LAYERS}
    assert {layer.dtype_policy.name for layer in model._flatten_layers(recursive=True)
            if layer.name in float32} == {DECISION_LAYER_DTYPE}
    assert keras.mixed_precision.global_policy().name == before
    with pytest.raises(OANetError, match="precision 'float16'"):
        load_trained_model(FIXTURE, precision="float16")


def test_predict_refuses_a_precision_for_a_saved_model(exported, tmp_path, images, capsys):
    status = cli_main(["predict", images[0], "--saved-model", exported[0], "--out",
                       str(tmp_path / "out"), "--precision", "bfloat16"])
    assert status != 0
    assert "export --precision" in capsys.readouterr().err
