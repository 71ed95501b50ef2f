"""PanopticSegmenter: the segments of `predict` for the same model and images, from every input
kind, lists of mixed sizes, each merge order, a SavedModel, and a fresh process that imports
the package from outside the repository."""

import contextlib
import io
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import oanet_tf
from oanet_tf.__main__ import main as cli_main
from oanet_tf.cli.predict import PANOPTIC_DIR, PREDICTIONS_JSON
from oanet_tf.config import MERGE_ORDERS
from oanet_tf.data.coco_panoptic import read_image
from oanet_tf.data.panoptic_format import read_id_png, rgb_to_id
from oanet_tf.errors import OANetError
from oanet_tf.fileio import read_json
from tests.tiny_model import synthetic_val_images

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = str(REPO / "tests" / "fixtures" / "trained_small")
NUM_IMAGES = 4
IMAGES_SEED = 7  # not the fixture's training data (seed 0)
SCORE_TOLERANCE = 1e-5
SUBPROCESS_SECONDS = 400
# A whole image's segmentation may move where a batch pads it larger than alone (convolutions
# see the padding near its border): most pixels keep their category.
MIN_SAME_CATEGORY_PIXELS = 0.95


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list:
    return synthetic_val_images(str(tmp_path_factory.mktemp("synthetic")), NUM_IMAGES,
                                IMAGES_SEED)


@pytest.fixture(scope="module")
def segmenter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixture has no best weights: see the test below
        # float32, so that every comparison below holds on any CPU (auto picks bfloat16 where
        # the CPU has it natively; tests/inference/test_precision.py tests that choice)
        return oanet_tf.PanopticSegmenter.from_model_dir(FIXTURE, precision="float32")


@pytest.fixture(scope="module")
def results(segmenter, images) -> list:
    return segmenter(images)


def assert_same_segments(got, panoptic, segments):
    """A result equals a reference id map and segments_info: each segment's pixels, category
    and score."""
    assert got.panoptic.shape == panoptic.shape
    assert [s["id"] for s in got.segments_info] == [s["id"] for s in segments]
    np.testing.assert_array_equal(got.panoptic, panoptic)
    for mine, theirs in zip(got.segments_info, segments):
        assert mine["category_id"] == theirs["category_id"]
        assert mine["score"] == pytest.approx(theirs["score"], abs=SCORE_TOLERANCE)
        assert mine["area"] == int((panoptic == theirs["id"]).sum())


def test_same_segments_as_predict(results, images, tmp_path):
    out = tmp_path / "predicted"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli_main(["predict", *images, "--model-dir", FIXTURE, "--out", str(out),
                         "--no-overlays", "--precision", "float32"]) == 0
    predicted = read_json(str(out / PREDICTIONS_JSON), "predictions")
    assert len(results) == len(images) == len(predicted["annotations"])
    for result, annotation in zip(results, predicted["annotations"]):
        panoptic = read_id_png(str(out / PANOPTIC_DIR / annotation["file_name"]), "predicted")
        assert_same_segments(result, panoptic, annotation["segments_info"])
    assert any(s["isthing"] for r in results for s in r.segments_info)


def test_segments_info_in_coco_form(results, segmenter):
    categories = {c["id"]: c for c in segmenter.categories.categories}
    for result in results:
        assert result.panoptic.dtype == np.int32
        for segment in result.segments_info:
            category = categories[segment["category_id"]]
            assert segment["category_name"] == category["name"]
            assert segment["isthing"] == category["isthing"]
            rows, cols = np.nonzero(result.panoptic == segment["id"])
            assert segment["area"] == len(rows) > 0
            assert segment["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                       rows.max() - rows.min() + 1]


def test_every_input_kind_gives_the_same_result(segmenter, images, results):
    path = images[0]
    with open(path, "rb") as f:
        encoded = f.read()
    kinds = {"numpy": read_image(path), "pathlib": pathlib.Path(path), "PIL": Image.open(path),
             "bytes": encoded}
    for kind, image in kinds.items():
        got = segmenter(image)
        assert_same_segments(got, results[0].panoptic, results[0].segments_info)


def test_list_of_mixed_sizes_and_kinds(segmenter, images, results):
    wide = np.asarray(Image.fromarray(read_image(images[1])).resize((160, 96)))
    alone = segmenter(wide)
    got = segmenter([images[0], wide, Image.open(images[2])], batch_size=3)
    assert isinstance(got, list) and len(got) == 3
    assert [r.panoptic.shape for r in got] == [(128, 128), (96, 160), (128, 128)]
    for result, reference in ((got[0], results[0]), (got[1], alone), (got[2], results[2])):
        same = _category_map(result) == _category_map(reference)
        assert same.mean() >= MIN_SAME_CATEGORY_PIXELS


def _category_map(result) -> np.ndarray:
    categories = np.zeros(result.panoptic.shape, np.int64)
    for segment in result.segments_info:
        categories[result.panoptic == segment["id"]] = segment["category_id"]
    return categories


def test_merge_order_as_the_postprocessor_merges(segmenter, images):
    """Each merge order's result equals that order's outputs of the one post-processor run on
    the same detections."""
    import tensorflow as tf

    from oanet_tf.inference.image_predictor import ImageInputs
    from oanet_tf.inference.postprocessor import image_segments
    from oanet_tf.inference.predictor import PanopticPredictor
    from oanet_tf.inference.trained_model import load_trained_model

    trained = load_trained_model(FIXTURE)
    config = trained.config
    inputs = ImageInputs(config.data, config.export.max_image_side).from_encoded(
        tf.constant([open(p, "rb").read() for p in images]))
    predictor = PanopticPredictor(trained.model, trained.categories, config.eval, MERGE_ORDERS)
    _, outputs = predictor(*inputs)
    orders = {}
    for order in MERGE_ORDERS:
        reference = {k: v.numpy() for k, v in outputs[order].items()}
        got = segmenter(images, merge_order=order)
        for i, result in enumerate(got):
            panoptic, segments = image_segments(reference, i)
            assert_same_segments(result, panoptic, segments)
        orders[order] = [[s["id"] for s in r.segments_info] for r in got]
    # The orders differ on these images: the test sees the choice take effect.
    assert orders["ranking"] != orders["detection"]


def test_progress_bar_for_lists_only_unless_asked(segmenter, images, capsys):
    segmenter(images[0])
    segmenter(images[:2], batch_size=2)
    assert "segment" not in capsys.readouterr().err
    segmenter(images[:2], batch_size=1)
    assert "2/2" in capsys.readouterr().err
    segmenter(images[0], progress=True)
    assert "1/1" in capsys.readouterr().err


def test_coco_png_decodes_to_the_id_map(results):
    for result in results:
        decoded = rgb_to_id(np.asarray(Image.open(io.BytesIO(result.to_coco_png()))))
        np.testing.assert_array_equal(decoded, result.panoptic)


def test_draw_keeps_the_size_and_takes_any_input_kind(results, images):
    drawn = results[0].draw(images[0])
    assert drawn.shape == (128, 128, 3) and drawn.dtype == np.uint8
    np.testing.assert_array_equal(results[0].draw(read_image(images[0])), drawn)
    assert results[0].draw(images[0], min_side=512).shape == (512, 512, 3)
    with pytest.raises(OANetError, match="pass the image it was made from"):
        results[0].draw(np.zeros((10, 20, 3), np.uint8))


def test_best_falls_back_to_last_with_a_warning(images, results):
    with pytest.warns(UserWarning, match="using the last weights"):
        segmenter = oanet_tf.PanopticSegmenter.from_model_dir(FIXTURE, weights="best",
                                                              precision="float32")
    assert_same_segments(segmenter(images[0]), results[0].panoptic, results[0].segments_info)


def test_bad_input_is_named(segmenter, images):
    with pytest.raises(OANetError, match=r"images\[1\] is not a decodable"):
        segmenter([images[0], b"not an image"])
    with pytest.raises(OANetError, match="got float64"):
        segmenter(np.zeros((8, 8, 3)))
    with pytest.raises(OANetError, match="no such image file"):
        segmenter(os.path.join(os.path.dirname(images[0]), "missing.jpg"))
    with pytest.raises(OANetError, match="merge_order 'best'"):
        segmenter(images[0], merge_order="best")


def test_from_saved_model_gives_the_same_segments(images, results, tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["export", "--model-dir", FIXTURE, "--export-dir",
                         str(tmp_path / "exported"), "--precision", "float32"]) == 0
    served = oanet_tf.PanopticSegmenter.from_saved_model(tmp_path / "exported" / "1")
    for got, reference in zip(served(images), results):
        assert_same_segments(got, reference.panoptic, reference.segments_info)
    with pytest.raises(OANetError, match="order it was exported with"):
        served(images[0], merge_order="detection")


def test_from_preset_on_a_local_model_dir(images, results):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segmenter = oanet_tf.PanopticSegmenter.from_preset(FIXTURE, precision="float32")
    assert_same_segments(segmenter(images[0]), results[0].panoptic, results[0].segments_info)


def test_from_a_keras_file(segmenter, images, results, tmp_path):
    import shutil

    shutil.copy(os.path.join(FIXTURE, "categories.json"), tmp_path)
    shutil.copy(os.path.join(FIXTURE, "config.yaml"), tmp_path)
    path = str(tmp_path / "model.keras")
    segmenter.model.save(path)
    loaded = oanet_tf.PanopticSegmenter.from_model_dir(path)
    assert_same_segments(loaded(images[0]), results[0].panoptic, results[0].segments_info)


@pytest.mark.parametrize("constructor", ["from_model_dir(sys.argv[1])",
                                         "from_preset('synthetic_demo')"])
def test_three_lines_in_a_fresh_process_outside_the_repo(images, tmp_path, constructor):
    code = ("import sys, oanet_tf; assert 'tensorflow' not in sys.modules; "
            f"seg = oanet_tf.PanopticSegmenter.{constructor}; "
            "r = seg(sys.argv[2]); assert r.segments_info; "
            "assert oanet_tf.__file__.startswith(sys.argv[3]), oanet_tf.__file__; print('ok')")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code, FIXTURE, images[0], str(REPO)],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=SUBPROCESS_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
