"""The SavedModel export: served outputs equal the evaluation path's, bad input, TF Serving.

One tiny model is trained for nothing (random weights, thresholds low enough that instances
and stuff segments appear), saved as a model dir and exported with the CLI. A subprocess that
imports TensorFlow only serves images through the export; the reference is the evaluation
path in this process: files read by PanopticDataset, resized by the tf.data pipeline, run
through PanopticPredictor and read by image_segments, as evaluate_model does. (The
post-processor both share is tested against hand-computed maps in
tests/inference/test_postprocessor.py.)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2
from tests.conftest import SAMPLE_ENV
from tests.export.serving import serving_results, start_serving
from tests.tiny_model import SIZE, tiny_config

from oanet_tf.__main__ import main as cli_main
from oanet_tf.config import PER_CLASS, save_config
from oanet_tf.data import image_sizes
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.panoptic_format import CategoryMap, rgb_to_id
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.data.synthetic import render_scene
from oanet_tf.data.tfrecords import PNG_SIGNATURE
from oanet_tf.environment import cpu_description
from oanet_tf.export import saved_model as export_lib
from oanet_tf.export.rest_json import columnar_body, row_body
from oanet_tf.fileio import read_json, write_json
from oanet_tf.inference.image_predictor import PANOPTIC_PNG
from oanet_tf.inference.panoptic_merge import NO_CATEGORY
from oanet_tf.inference.postprocessor import (OUTSIDE_IMAGE, PanopticPostprocessor,
                                              image_segments)
from oanet_tf.inference.predictor import PanopticPredictor
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.inference.trained_model import CATEGORIES_FILE, CONFIG_FILE, LAST_WEIGHTS

CATEGORIES = CategoryMap.from_categories([
    {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 2, "name": "tie", "isthing": 1, "color": [188, 208, 182]},
    {"id": 10, "name": "sky", "isthing": 0, "color": [70, 130, 180]},
    {"id": 11, "name": "grass", "isthing": 0}])  # no color: the export derives one
# Images resized to at most 64 pixels a side; no bucket (the synthetic config's 128x128 one
# would pad them to 128, where the random-weight tiny model draws no instance in some images;
# buckets at serving are tested in tests/inference/test_image_predictor.py).
# The stuff area rule per connected region: its connected components run in the graph, so
# the export keeps them (test_per_region_rule_is_served).
OVERRIDES = ("data.short_side=48", "data.max_side=64", "data.buckets=[]",
             "model.roi_heads.test_score_threshold=0.0", "eval.instance_score_threshold=0.0",
             "eval.min_stuff_area=16", "eval.stuff_area_rule=per_region")
INVALID_ARGUMENT = 3  # the gRPC / TensorFlow status code
VERSION = "1"
MODEL_NAME = "oanet"
COCO_PREFIX = "coco_"
SERVER_START_SECONDS = 60
SUBPROCESS_SECONDS = 300


# --------------------------------------------------------------------------- inputs

def _encode(image: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    picture = Image.fromarray(image)
    if mode:
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _scene(seed: int, shape) -> np.ndarray:
    return render_scene(np.random.default_rng(seed), shape)[0]


def _make_images() -> dict:
    """name -> encoded bytes: JPEG and PNG scenes of several sizes, grayscale, RGBA, 1x1."""
    rgba = np.dstack([_scene(3, (40, 80)), np.random.default_rng(0).integers(
        0, 256, (40, 80), dtype=np.uint8)])
    return {
        "scene_jpeg": _encode(_scene(0, (72, 96)), "JPEG"),
        "scene_png": _encode(_scene(1, (72, 96)), "PNG"),
        "tall_png": _encode(_scene(2, (100, 60)), "PNG"),
        "gray_jpeg": _encode(_scene(4, (56, 56)), "JPEG", "L"),
        "gray_png": _encode(_scene(5, (48, 40)), "PNG", "L"),
        "rgba_png": _encode(rgba, "PNG"),
        "one_pixel_png": _encode(np.full((1, 1, 3), 200, np.uint8), "PNG"),
    }


def _png_header(height: int, width: int) -> bytes:
    """A PNG signature and IHDR chunk declaring height x width (no pixel data)."""
    # Bit depth 8, color type 2 (RGB), default compression, filter and interlace.
    body = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (PNG_SIGNATURE + (13).to_bytes(4, "big") + body
            + zlib.crc32(body).to_bytes(4, "big"))


def _write_dataset(root: str, images: dict) -> PanopticDataset:
    """The images as a COCO panoptic split with void annotations, for the eval pipeline."""
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "panoptic"))
    entries, annotations = [], []
    for image_id, (name, data) in enumerate(images.items(), start=1):
        suffix = ".jpg" if data[:2] == b"\xff\xd8" else ".png"
        with open(os.path.join(root, "images", name + suffix), "wb") as f:
            f.write(data)
        width, height = Image.open(io.BytesIO(data)).size
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(
            os.path.join(root, "panoptic", name + ".png"))
        entries.append({"id": image_id, "file_name": name + suffix, "height": height,
                        "width": width})
        annotations.append({"image_id": image_id, "file_name": name + ".png",
                            "segments_info": []})
    write_json(os.path.join(root, "panoptic.json"), {
        "images": entries, "annotations": annotations,
        "categories": list(CATEGORIES.categories)})
    return PanopticDataset(os.path.join(root, "images"), os.path.join(root, "panoptic.json"),
                           os.path.join(root, "panoptic"))


# --------------------------------------------------------------------------- reference

def _in_process(model, config, dataset: PanopticDataset, categories: CategoryMap,
                other_eval=None) -> list:
    """The evaluation path: [(panoptic [h, w] at the original size, segments_info)] in the
    dataset's order. Its batches group the images by orientation, each padded by
    image_sizes.padded_size; every one of them is checked to have the padded size of the
    served batch of all the images, so the model sees the same pixels. With other_eval (an
    EvalConfig), also the same detections post-processed with it: -> (list, other list)."""
    found, other, canvases, sizes = {}, {}, set(), []
    predictor = PanopticPredictor(model, categories, config.eval)
    for batch in build_dataset(dataset, config.data, training=False, batch_size=len(dataset)):
        canvases.add(tuple(batch["images"].shape[1:3]))
        sizes.append(batch["image_size"])
        sizes_in = (batch["image_size"], batch["original_size"])
        detections, outputs = predictor(batch["images"], *sizes_in)
        outputs = {k: v.numpy() for k, v in outputs[config.eval.merge_order].items()}
        if other_eval is not None:
            other_outputs = PanopticPostprocessor(categories, other_eval)(
                detections, *sizes_in)[other_eval.merge_order]
            other_outputs = {k: v.numpy() for k, v in other_outputs.items()}
        for i, image_id in enumerate(batch["image_id"].numpy()):
            found[int(image_id)] = image_segments(outputs, i)
            if other_eval is not None:
                other[int(image_id)] = image_segments(other_outputs, i)
    served = image_sizes.padded_size(tf.concat(sizes, axis=0), config.data.buckets)
    assert canvases == {tuple(served.numpy())}
    ordered = [found[record.image_id] for record in dataset.records]
    if other_eval is None:
        return ordered
    return ordered, [other[record.image_id] for record in dataset.records]


def _compare(served: dict, index: int, reference) -> dict:
    """Check one served image against its reference; returns the agreement measured."""
    panoptic, segments = reference
    height, width = panoptic.shape
    assert (served["height"][index], served["width"][index]) == (height, width)
    image_map = served["panoptic"][index]
    assert (image_map[height:] == OUTSIDE_IMAGE).all()
    assert (image_map[:, width:] == OUTSIDE_IMAGE).all()
    agreement = {"pixels": float(np.mean(image_map[:height, :width] == panoptic)),
                 "max_score_diff": 0.0}
    count = int(served["num_segments"][index])
    assert count == len(segments)
    for k, segment in enumerate(segments):
        assert served["segment_ids"][index, k] == segment["id"]
        assert served["category_ids"][index, k] == segment["category_id"]
        assert served["is_thing"][index, k] == CATEGORIES.is_thing(segment["category_id"])
        assert served["areas"][index, k] == segment["area"]
        np.testing.assert_array_equal(served["boxes"][index, k], segment["bbox"])
        for served_key, key in (("detection_scores", "score"),
                                ("ranking_scores", "ranking_score")):
            diff = abs(float(served[served_key][index, k]) - segment[key])
            agreement["max_score_diff"] = max(agreement["max_score_diff"], diff)
    assert (served["segment_ids"][index, count:] == 0).all()
    assert (served["category_ids"][index, count:] == NO_CATEGORY).all()
    assert (served["areas"][index, count:] == 0).all()
    return agreement


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def config():
    return tiny_config(*OVERRIDES)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, config):
    """A model dir as `train` writes it, with random weights; returns (model, its dir)."""
    root = str(tmp_path_factory.mktemp("model_dir"))
    keras.utils.set_random_seed(0)
    model = build_oanet(config.model, config.train, CATEGORIES)
    model.detect(tf.zeros((1, *SIZE, 3)))  # builds the heads
    os.makedirs(os.path.join(root, "checkpoints"))
    model.save_weights(os.path.join(root, LAST_WEIGHTS))
    save_config(config, os.path.join(root, CONFIG_FILE))
    write_json(os.path.join(root, CATEGORIES_FILE), list(CATEGORIES.categories))
    return model, root


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model_dir):
    """Export with the CLI over a stale export; returns (base dir, export dir, CLI output)."""
    base = str(tmp_path_factory.mktemp("exports"))
    os.makedirs(os.path.join(base, VERSION))
    with open(os.path.join(base, VERSION, "stale.txt"), "w") as f:
        f.write("an older export")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        # float32: the reference is the float32 evaluation path (auto picks bfloat16 on a
        # CPU with avx512_bf16; tests/export/test_bfloat16.py serves that).
        status = cli_main(["export", "--model-dir", model_dir[1], "--export-dir", base,
                           "--version", VERSION, "--precision", "float32"])
    assert status == 0
    return base, os.path.join(base, VERSION), printed.getvalue()


@pytest.fixture(scope="module")
def images():
    """The synthetic images, plus the real COCO sample's ("coco_" names) when present; one
    batch for all keeps the file fast (one trace in process, one subprocess)."""
    found = _make_images()
    sample = os.environ.get(SAMPLE_ENV, "")
    if os.path.isfile(os.path.join(sample, "panoptic.json")):
        for entry in read_json(os.path.join(sample, "panoptic.json"))["images"]:
            with open(os.path.join(sample, "images", entry["file_name"]), "rb") as f:
                found[f"{COCO_PREFIX}{entry['id']}"] = f.read()
    return found


def _synthetic(images) -> list:
    return [name for name in images if not name.startswith(COCO_PREFIX)]


@pytest.fixture(scope="module")
def references(tmp_path_factory, model_dir, config, images):
    """The evaluation path's results by image name: with the config (per-region stuff rule),
    and the same detections merged with the per-class rule."""
    dataset = _write_dataset(str(tmp_path_factory.mktemp("dataset")), images)
    per_class = dataclasses.replace(config.eval, stuff_area_rule=PER_CLASS)
    found, by_class = _in_process(model_dir[0], config, dataset, CATEGORIES, per_class)
    return dict(zip(images, found)), dict(zip(images, by_class))


@pytest.fixture(scope="module")
def reference(references):
    return references[0]


@pytest.fixture(scope="module")
def serving_process(tmp_path_factory, exported, images):
    """Start the subprocess (TensorFlow only) on the calls; returns (process, dir, calls)."""
    work = str(tmp_path_factory.mktemp("served"))
    files = {}
    for name, data in {**images, "not_an_image": b"GIF89a but not really",
                       "truncated_png": images["scene_png"][:100],
                       "empty_bytes": b"", "too_large_png": _png_header(9000, 9000),
                       "huge_png": _encode(np.kron(_scene(6, (40, 60)), np.ones(
                           (100, 100, 1), np.uint8)), "PNG", "L")}.items():
        files[name] = os.path.join(work, name)
        with open(files[name], "wb") as f:
            f.write(data)
    pixels = np.stack([np.asarray(Image.open(files[n]).convert("RGB"))
                       for n in ("scene_jpeg", "scene_png")])
    np.save(os.path.join(work, "pixels.npy"), pixels)
    np.save(os.path.join(work, "empty_pixels.npy"), np.zeros((0, 8, 8, 3), np.uint8))
    np.save(os.path.join(work, "no_rows.npy"), np.zeros((1, 0, 8, 3), np.uint8))
    good = [files[n] for n in images]
    synthetic = [files[n] for n in _synthetic(images)]
    calls = [
        {"name": "encoded", "signature": export_lib.IMAGES_SIGNATURE, "files": good},
        {"name": "tensor", "signature": export_lib.TENSOR_SIGNATURE,
         "array": os.path.join(work, "pixels.npy")},
        {"name": "categories", "signature": export_lib.CATEGORIES_SIGNATURE},
        {"name": "dense_pair", "signature": export_lib.IMAGES_SIGNATURE,
         "files": [files["scene_jpeg"], files["tall_png"]]},
        {"name": "png_pair", "signature": export_lib.PNG_SIGNATURE,
         "files": [files["scene_jpeg"], files["tall_png"]]},
        {"name": "empty_png", "signature": export_lib.PNG_SIGNATURE, "files": []},
        {"name": "empty", "signature": export_lib.IMAGES_SIGNATURE, "files": []},
        {"name": "empty_tensor", "signature": export_lib.TENSOR_SIGNATURE,
         "array": os.path.join(work, "empty_pixels.npy")},
        {"name": "no_rows", "signature": export_lib.TENSOR_SIGNATURE,
         "array": os.path.join(work, "no_rows.npy")},
        {"name": "huge", "signature": export_lib.IMAGES_SIGNATURE, "files": [files["huge_png"]]},
    ]
    for name in ("not_an_image", "truncated_png", "empty_bytes", "too_large_png"):
        calls.append({"name": name, "signature": export_lib.IMAGES_SIGNATURE,
                      "files": [synthetic[0], synthetic[1], files[name]]})
    process = start_serving(exported[1], calls, work)
    yield process, work, calls
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def served(serving_process, reference):
    """The subprocess's results: (outputs by call name, errors by call name). The reference
    is computed in this process while the subprocess runs."""
    process, work, calls = serving_process
    return serving_results(process, work, calls, SUBPROCESS_SECONDS)


@pytest.fixture(scope="module")
def signature_defs(exported) -> dict:
    """The SignatureDefs of saved_model.pb: what TF Serving matches requests against."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(exported[1], "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return dict(saved_model.meta_graphs[0].signature_def)


# --------------------------------------------------------------------------- tests

def test_cli_export_replaces_the_old_export_and_prints_signatures(exported):
    base, export_dir, printed = exported
    assert sorted(os.listdir(base)) == [VERSION]  # no temporary directory left behind
    assert not os.path.exists(os.path.join(export_dir, "stale.txt"))
    assert os.path.isfile(os.path.join(export_dir, "saved_model.pb"))
    for name in (export_lib.IMAGES_SIGNATURE, export_lib.TENSOR_SIGNATURE,
                 export_lib.PNG_SIGNATURE, export_lib.CATEGORIES_SIGNATURE):
        assert f"signature {name}:" in printed
    assert "input  images: string (None,)" in printed
    assert "output panoptic: int32 (None, None, None)" in printed
    assert f"output {PANOPTIC_PNG}: string (None,)" in printed


def test_served_images_match_the_evaluation_path(served, reference, images):
    outputs, errors = served
    assert "encoded" not in errors
    encoded = outputs["encoded"]
    for index, name in enumerate(images):
        if name.startswith(COCO_PREFIX):
            continue  # test_real_coco_images
        agreement = _compare(encoded, index, reference[name])
        print(f"serving_default {name}: identical pixels {agreement['pixels']:.4f}, "
              f"max score difference {agreement['max_score_diff']:.2e}")
        assert agreement["pixels"] == 1.0, name
        assert agreement["max_score_diff"] < 1e-5, name
    # Not vacuous: instances and stuff were drawn in every image but the 1x1 one (its one
    # original pixel is below the minimum stuff area).
    scenes = [i for i, name in enumerate(images) if name in _synthetic(images)
              and name != "one_pixel_png"]
    drawn = encoded["segment_ids"][scenes] > 0
    assert (drawn & encoded["is_thing"][scenes]).any(axis=1).all()
    assert (drawn & ~encoded["is_thing"][scenes]).any(axis=1).all()
    sizes = np.array([reference[name][0].shape for name in images])
    assert encoded["panoptic"].shape[1:] == tuple(sizes.max(axis=0))


def _decode_png(data: bytes) -> np.ndarray:
    """COCO panoptic PNG bytes -> segment ids [h, w], decoded by PIL (not TensorFlow)."""
    picture = Image.open(io.BytesIO(data))
    assert picture.mode == "RGB"
    return rgb_to_id(np.asarray(picture))


def test_png_signature_gives_the_dense_maps_at_each_original_size(served, images):
    """serving_png on two images of different sizes: each PNG decodes to exactly the dense
    map of serving_default on the same batch, cropped to the image's own size (the batch
    padding, -1 in the dense map, is not in the PNG); the segment tables are identical."""
    outputs, errors = served
    dense, png = outputs["dense_pair"], outputs["png_pair"]
    assert "panoptic" not in png and len(png[PANOPTIC_PNG]) == 2
    sizes = [Image.open(io.BytesIO(images[n])).size[::-1] for n in ("scene_jpeg", "tall_png")]
    assert sizes[0] != sizes[1]
    assert (dense["panoptic"] == OUTSIDE_IMAGE).any()  # the crop matters in this batch
    for index, (height, width) in enumerate(sizes):
        ids = _decode_png(png[PANOPTIC_PNG][index])
        assert ids.shape == (height, width)
        np.testing.assert_array_equal(ids, dense["panoptic"][index, :height, :width])
        assert (ids > 0).any()
    for key, value in dense.items():
        if key != "panoptic":
            np.testing.assert_array_equal(png[key], value, err_msg=key)
    assert png[PANOPTIC_PNG].dtype.kind == "S" and outputs["empty_png"][PANOPTIC_PNG].shape == (0,)


def test_png_output_is_base64_in_the_rest_json(served):
    """TF Serving's REST JSON of serving_png (both forms) carries each PNG as {"b64": ...},
    the table as numbers; the dense map of serving_default is one number per pixel."""
    png = served[0]["png_pair"]
    columnar = json.loads(columnar_body(png))["outputs"]
    rows = json.loads(row_body(png))["predictions"]
    for index, data in enumerate(png[PANOPTIC_PNG]):
        for item in (columnar[PANOPTIC_PNG][index], rows[index][PANOPTIC_PNG]):
            assert set(item) == {"b64"} and base64.b64decode(item["b64"]) == data
        assert rows[index]["segment_ids"] == png["segment_ids"][index].tolist()
    dense = served[0]["dense_pair"]
    assert np.array(json.loads(columnar_body(dense))["outputs"]["panoptic"]).shape == \
        dense["panoptic"].shape


def test_served_tensors_match_the_evaluation_path(served, reference):
    outputs, errors = served
    assert "tensor" not in errors
    for index, name in enumerate(("scene_jpeg", "scene_png")):
        agreement = _compare(outputs["tensor"], index, reference[name])
        print(f"serving_tensor {name}: identical pixels {agreement['pixels']:.4f}, "
              f"max score difference {agreement['max_score_diff']:.2e}")
        assert agreement["pixels"] == 1.0 and agreement["max_score_diff"] < 1e-5


def test_per_region_rule_is_served(served, references, images):
    """The served maps equal the evaluation path's with eval.stuff_area_rule=per_region
    (test_served_images_match_the_evaluation_path), and that rule changes some map here:
    the per-class rule on the same detections gives another map for at least one image."""
    reference, by_class = references
    encoded = served[0]["encoded"]
    changed = [name for name in images
               if not np.array_equal(by_class[name][0], reference[name][0])]
    assert changed, "the per-region rule changed no map: the test shows nothing"
    for name in changed:
        index = list(images).index(name)
        height, width = reference[name][0].shape
        np.testing.assert_array_equal(encoded["panoptic"][index, :height, :width],
                                      reference[name][0])


@pytest.mark.parametrize("name, problem", [
    ("not_an_image", "images[2] is not a decodable"),
    ("truncated_png", "images[2] is not a decodable"),
    ("empty_bytes", "images[2] is not a decodable"),
    ("too_large_png", "images[2] is 9000x9000 pixels"),
])
def test_bad_items_fail_with_invalid_argument_naming_the_item(served, name, problem):
    outputs, errors = served
    assert name not in outputs
    assert errors[name]["code"] == INVALID_ARGUMENT
    assert problem in errors[name]["message"]


def test_empty_batches_return_empty_outputs(served):
    outputs, errors = served
    for name in ("empty", "empty_tensor"):
        assert outputs[name]["panoptic"].shape == (0, 0, 0)
        assert outputs[name]["boxes"].shape[0] == 0 and outputs[name]["boxes"].shape[2] == 4
        assert outputs[name]["num_segments"].shape == (0,)
    assert errors["no_rows"]["code"] == INVALID_ARGUMENT
    assert "images[0] is 0x8 pixels" in errors["no_rows"]["message"]


def test_large_image_segments_are_measured_at_the_original_size(served):
    outputs, errors = served
    huge = outputs["huge"]
    assert (huge["height"][0], huge["width"][0]) == (4000, 6000)
    panoptic = huge["panoptic"][0]
    assert panoptic.shape == (4000, 6000)
    count = int(huge["num_segments"][0])
    assert count > 0
    ids, areas = np.unique(panoptic, return_counts=True)
    area_of = dict(zip(ids.tolist(), areas.tolist()))
    for k in range(count):
        segment = int(huge["segment_ids"][0, k])
        assert huge["areas"][0, k] == area_of[segment]
        rows = np.flatnonzero((panoptic == segment).any(axis=1))
        cols = np.flatnonzero((panoptic == segment).any(axis=0))
        np.testing.assert_array_equal(huge["boxes"][0, k], [
            cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1])


def test_categories_signature_and_asset(served, exported):
    categories = served[0]["categories"]
    expected = CATEGORIES.categories
    np.testing.assert_array_equal(categories["ids"], [c["id"] for c in expected])
    np.testing.assert_array_equal(categories["names"], [c["name"] for c in expected])
    np.testing.assert_array_equal(categories["isthing"], [bool(c["isthing"]) for c in expected])
    np.testing.assert_array_equal(categories["colors"][:3], [c["color"] for c in expected[:3]])
    derived = categories["colors"][3]
    assert derived.min() >= 0 and derived.max() <= 255
    asset = read_json(os.path.join(exported[1], export_lib.ASSETS_DIR,
                                   export_lib.CATEGORIES_ASSET))
    assert [c["id"] for c in asset] == [c["id"] for c in expected]
    assert [c["color"] for c in asset] == categories["colors"].tolist()


def test_real_coco_images(coco_sample_dir, served, reference, images):
    names = [name for name in images if name.startswith(COCO_PREFIX)]
    assert names, f"the images of {coco_sample_dir} were not served"
    for index, name in enumerate(images):
        if name not in names:
            continue
        agreement = _compare(served[0]["encoded"], index, reference[name])
        print(f"COCO {name}: identical pixels {agreement['pixels']:.4f}, max score "
              f"difference {agreement['max_score_diff']:.2e}")
        assert agreement["pixels"] == 1.0 and agreement["max_score_diff"] < 1e-5


# ------------------------------------------------------------------------ TF Serving

def _predict_request(data: list):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = export_lib.IMAGES_SIGNATURE
    request.inputs[export_lib.INPUT_NAME].CopyFrom(tf.make_tensor_proto(data, tf.string))
    return request


def _rest_body(data: list) -> dict:
    return {"signature_name": export_lib.IMAGES_SIGNATURE,
            "instances": [{"b64": base64.b64encode(d).decode("ascii")} for d in data]}


def test_serving_requests_name_the_signature_and_its_input(signature_defs, images):
    pytest.importorskip("tensorflow_serving.apis.predict_pb2",
                        reason="tensorflow-serving-api is not installed "
                               "(pip install tensorflow-serving-api==2.21.*)")
    data = [images["scene_jpeg"], images["tall_png"]]
    request = _predict_request(data)
    signature = signature_defs[request.model_spec.signature_name]
    assert set(request.inputs) == set(signature.inputs) == {export_lib.INPUT_NAME}
    sent = request.inputs[export_lib.INPUT_NAME]
    assert sent.dtype == signature.inputs[export_lib.INPUT_NAME].dtype == tf.string \
        .as_datatype_enum
    assert [d.size for d in sent.tensor_shape.dim] == [len(data)]
    assert tf.make_ndarray(sent).tolist() == data
    assert {"panoptic", "segment_ids", "category_ids", "boxes"} <= set(signature.outputs)

    body = json.loads(json.dumps(_rest_body(data)))
    assert body["signature_name"] in signature_defs
    # One named input: TF Serving's row format takes each instance as that input's value.
    assert len(signature.inputs) == 1
    assert [base64.b64decode(i["b64"]) for i in body["instances"]] == data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorflow_model_server_rest_and_grpc(exported, served, images):
    server = shutil.which("tensorflow_model_server")
    if server is None:
        pytest.skip("tensorflow_model_server is not on PATH (it is a separate binary, not "
                    "installable with pip here; see https://www.tensorflow.org/tfx/serving)")
    grpc = pytest.importorskip("grpc")
    prediction_service = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    grpc_port, rest_port = _free_port(), _free_port()
    # The server listens on all interfaces (it has no bind-address flag); we query 127.0.0.1.
    process = subprocess.Popen([server, f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                                f"--model_name={MODEL_NAME}", f"--model_base_path={exported[0]}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for us
    try:
        status_url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}"
        deadline = time.time() + SERVER_START_SECONDS
        while True:
            try:
                with local.open(status_url, timeout=2) as reply:
                    states = [v["state"] for v in json.load(reply)["model_version_status"]]
                if "AVAILABLE" in states:
                    break
            except OSError:
                pass
            assert time.time() < deadline and process.poll() is None, "server did not start"
            time.sleep(0.5)
        names = list(images)
        data = [images["scene_jpeg"], images["tall_png"]]
        expected = served[0]["encoded"]
        rows = [names.index("scene_jpeg"), names.index("tall_png")]

        request = urllib.request.Request(status_url + ":predict",
                                         data=json.dumps(_rest_body(data)).encode(),
                                         headers={"Content-Type": "application/json"})
        with local.open(request, timeout=60) as reply:
            predictions = json.load(reply)["predictions"]
        for prediction, row in zip(predictions, rows):
            assert prediction["segment_ids"] == expected["segment_ids"][row].tolist()
            assert prediction["areas"] == expected["areas"][row].tolist()

        body = {"signature_name": export_lib.PNG_SIGNATURE,
                "inputs": {export_lib.INPUT_NAME: _rest_body(data)["instances"]}}
        request = urllib.request.Request(status_url + ":predict", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with local.open(request, timeout=60) as reply:
            pngs = json.load(reply)["outputs"][PANOPTIC_PNG]
        for png, row in zip(pngs, rows):
            ids = _decode_png(base64.b64decode(png["b64"]))
            np.testing.assert_array_equal(ids, expected["panoptic"][row][:ids.shape[0],
                                                                         :ids.shape[1]])

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}",
                                   options=[("grpc.enable_http_proxy", 0)]) as channel:
            stub = prediction_service.PredictionServiceStub(channel)
            response = stub.Predict(_predict_request(data), timeout=60)
        panoptic = tf.make_ndarray(response.outputs["panoptic"])
        for index, row in enumerate(rows):
            np.testing.assert_array_equal(panoptic[index], expected["panoptic"][row][
                :panoptic.shape[1], :panoptic.shape[2]])
    finally:
        process.terminate()
        process.wait(timeout=30)


# ------------------------------------------------------------------- writing, CLI errors

def test_failed_export_keeps_the_previous_one(tmp_path, model_dir, config, monkeypatch):
    target = tmp_path / "export"
    target.mkdir()
    (target / "saved_model.pb").write_bytes(b"the previous export")

    def fail(self, path, **kwargs):
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"half written")
        raise OSError("disk full")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", fail)
    with pytest.raises(OSError, match="disk full"):
        export_lib.export_saved_model(model_dir[0], CATEGORIES, config.data, config.eval,
                                      str(target))
    assert (target / "saved_model.pb").read_bytes() == b"the previous export"
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_export_rejects_categories_that_do_not_fit_the_model(model_dir, config, tmp_path):
    three_things = CategoryMap.from_categories(
        list(CATEGORIES.categories) + [{"id": 3, "name": "ball", "isthing": 1}])
    with pytest.raises(ValueError, match="3 things"):
        export_lib.export_saved_model(model_dir[0], three_things, config.data, config.eval,
                                      str(tmp_path / "export"))


@pytest.mark.parametrize("case, message", [
    ("missing_dir", "no such directory"),
    ("no_config", "config.yaml not found"),
    ("no_categories", "categories.json not found"),
    ("bad_weights", "weights file not found"),
    ("corrupt_weights", "does not fit the model of the config"),
])
def test_cli_reports_a_wrong_model_dir_in_one_line(tmp_path, model_dir, capsys, case,
                                                   message):
    root = tmp_path / "model"
    args = ["export", "--model-dir", str(root), "--export-dir", str(tmp_path / "out")]
    if case != "missing_dir":
        shutil.copytree(model_dir[1], root)
    if case == "no_config":
        os.remove(root / CONFIG_FILE)
    if case == "no_categories":
        os.remove(root / CATEGORIES_FILE)
    if case == "bad_weights":
        args += ["--weights", str(root / "missing.weights.h5")]
    if case == "corrupt_weights":
        (root / LAST_WEIGHTS).write_bytes(b"not HDF5")
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "out")


# --------------------------------------------------------------------------- predict CLI

def test_predict_cli_same_from_saved_model_and_model_dir(tmp_path, model_dir, exported):
    """`predict` writes COCO panoptic PNG + JSON + overlays; a SavedModel and the model dir
    it came from give identical files."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name, data in list(_make_images().items())[:3]:
        (folder / f"{name}.img").write_bytes(data)  # unknown extension: listed explicitly
    files = sorted(str(p) for p in folder.iterdir())
    results = {}
    for source, flag in (("saved", ["--saved-model", exported[1]]),
                         ("dir", ["--model-dir", model_dir[1], "--precision", "float32"])):
        out = tmp_path / source
        assert cli_main(["predict", *files, *flag, "--out", str(out)]) == 0
        results[source] = read_json(str(out / "panoptic_predictions.json"))
        pngs = sorted(os.listdir(out / "panoptic"))
        assert len(pngs) == len(files) == len(os.listdir(out / "overlays"))
        results[source + "_png"] = [np.asarray(Image.open(out / "panoptic" / p)) for p in pngs]
    assert results["saved"]["annotations"] == results["dir"]["annotations"]
    for a, b in zip(results["saved_png"], results["dir_png"]):
        np.testing.assert_array_equal(a, b)
    assert any(a["segments_info"] for a in results["saved"]["annotations"])


def test_predict_cli_missing_input(tmp_path, exported, capsys):
    status = cli_main(["predict", str(tmp_path / "nope.jpg"), "--saved-model", exported[1],
                       "--out", str(tmp_path / "out")])
    assert status == 2 and "no such image or folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- evaluate CLI

def test_evaluate_cli_reports_streamed_and_file_pq(tmp_path, config, synthetic_dir, capsys):
    """`evaluate` writes predictions per merge order and metrics whose streamed PQ equals
    the PQ of the written files; a dataset of other categories is refused."""
    categories = PanopticDataset(f"{synthetic_dir}/val/images", f"{synthetic_dir}/val/panoptic.json",
                                 f"{synthetic_dir}/val/panoptic").categories
    root = str(tmp_path / "model")
    os.makedirs(os.path.join(root, "checkpoints"))
    keras.utils.set_random_seed(0)
    model = build_oanet(config.model, config.train, categories)
    model.save_weights(os.path.join(root, LAST_WEIGHTS))
    save_config(config, os.path.join(root, CONFIG_FILE))
    write_json(os.path.join(root, CATEGORIES_FILE), list(categories.categories))
    out = tmp_path / "eval"
    status = cli_main(["evaluate", "--model-dir", root, "--orders", "ranking", "detection",
                       "--out", str(out), "--set", f"data.synthetic_dir={synthetic_dir}"])
    assert status == 0
    metrics = read_json(str(out / "metrics.json"))
    for order in ("ranking", "detection"):
        assert (out / f"panoptic_{order}.json").is_file()
        ours, official = metrics[order]["pq"], metrics[order]["pq_files"]
        for group in ("All", "Things", "Stuff"):
            for key in ("pq", "sq", "rq", "n"):
                assert abs(ours[group][key] - official[group][key]) < 1e-9
        assert "accuracy" in metrics[order]["ownership"]
    assert set(metrics["detection_quality"]) >= {"recall", "mask_iou"}
    for iou_type in ("bbox", "segm"):
        assert set(metrics["coco_ap"][iou_type]) >= {"AP", "AP50", "AP75"}
        assert all(0.0 <= metrics["coco_ap"][iou_type][k] <= 1.0 for k in ("AP", "AP50", "AP75"))
    assert metrics["environment"]["tensorflow"] == tf.__version__  # what computed them
    assert metrics["environment"]["cpu"] == cpu_description()
    assert "heuristic (detection score)" in capsys.readouterr().out

    renumbered = [{**c, "id": c["id"] + 1000} for c in categories.categories]
    write_json(os.path.join(root, CATEGORIES_FILE), renumbered)  # same shapes, other ids
    status = cli_main(["evaluate", "--model-dir", root, "--out", str(out),
                       "--set", f"data.synthetic_dir={synthetic_dir}"])
    assert status == 2 and "differ from the model" in capsys.readouterr().err
