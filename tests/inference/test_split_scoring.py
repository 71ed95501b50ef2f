"""Scoring a split (evaluate_model) decodes each val image and PNG once, and scores what it writes exactly as
the files score: PQ from the written predictions and ownership from the files' ground truth."""

import collections
import os
import shutil
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.data import coco_panoptic
from oanet_tf.data.coco_panoptic import PanopticDataset, read_image
from oanet_tf.data.panoptic_format import read_id_png
from oanet_tf.data.pipeline import ORIGINAL_KEYS, batches, build_dataset
from oanet_tf.data.splits import resolve_split
from oanet_tf.data.synthetic import make_synthetic_dataset
from oanet_tf.evaluation.coco_ap import STAT_NAMES, CocoAP
from oanet_tf.evaluation.detection import DetectionQuality
from oanet_tf.evaluation.ownership import OwnershipAccumulator
from oanet_tf.evaluation.pq import evaluate_files
from oanet_tf.fileio import read_json, write_json
from oanet_tf.inference.split_scoring import evaluate_model
from oanet_tf.inference.trained_model import load_trained_model
from oanet_tf.inference.writer import PanopticWriter
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.ops.mask_ops import MASK_THRESHOLD
from tests.tiny_model import tiny_config

ORDERS = ("ranking", "detection")
BATCH_SIZE = 4  # the 6 val images: one full batch and one partial
TRAINED_SMALL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "trained_small")
MIXED_SIZES = ((64, 96), (80, 48))  # (height, width) of the images of one evaluation batch


@pytest.fixture(scope="module")
def setup(synthetic_dir):
    """(config, model with random weights, val dataset): thresholds low enough that
    instances and stuff segments appear."""
    config = tiny_config(f"data.synthetic_dir={synthetic_dir}",
                         "data.short_side=96", "data.max_side=128",
                         "model.roi_heads.test_score_threshold=0.0",
                         "eval.instance_score_threshold=0.0",
                         "eval.min_stuff_area=16")
    val = PanopticDataset.from_split(resolve_split(config.data, "val"))
    keras.utils.set_random_seed(0)
    model = build_oanet(config.model, config.train, val.categories)
    return config, model, val


@pytest.fixture(scope="module")
def evaluated(setup, tmp_path_factory):
    """One evaluate_model run with file reads counted: (results, reads by path, written
    files by order, scored images, detection quality)."""
    config, model, val = setup
    out = str(tmp_path_factory.mktemp("eval"))
    reads = collections.Counter()
    lock = threading.Lock()  # the pipeline decodes on several threads

    def counted(reader):
        def read(path, *args):
            with lock:
                reads[path] += 1
            return reader(path, *args)
        return read

    writers = {order: PanopticWriter(os.path.join(out, f"{order}.json"),
                                     os.path.join(out, order), val.categories)
               for order in ORDERS}
    scored = []
    quality = DetectionQuality(model.test_score_threshold)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(coco_panoptic, "read_image", counted(coco_panoptic.read_image))
        patch.setattr(coco_panoptic, "read_id_png", counted(coco_panoptic.read_id_png))
        results = evaluate_model(model, val, config.data, config.eval, BATCH_SIZE,
                                 orders=ORDERS, writers=writers, progress=False,
                                 on_image=scored.append, detection_quality=quality)
    return results, reads, writers, scored, quality


def test_each_image_and_png_is_read_once(setup, evaluated):
    val = setup[2]
    reads = evaluated[1]
    expected = {path: 1 for record in val.records
                for path in (record.image_file, record.png_file)}
    assert dict(reads) == expected


def test_pq_equals_the_written_files(setup, evaluated):
    val = setup[2]
    results, _, writers = evaluated[:3]
    for order in ORDERS:
        from_files = evaluate_files(val.panoptic_json, val.panoptic_dir, writers[order].out_json,
                                    writers[order].out_dir, workers=1, progress=False)
        for group in ("All", "Things", "Stuff"):
            for key in ("pq", "sq", "rq", "n"):
                assert results[order]["pq"][group][key] == pytest.approx(
                    from_files[group][key], abs=1e-12)
    assert results["ranking"]["pq"]["All"]["n"] > 0


def test_ownership_equals_the_files_ground_truth(setup, evaluated):
    """Ownership from the pipeline's ground truth equals ownership from the files decoded
    again here (instance masks of load_example, the PNG, the written predictions)."""
    val = setup[2]
    results, _, writers, scored = evaluated[:4]
    for order in ORDERS:
        reference = OwnershipAccumulator()
        predictions = {a["image_id"]: a for a in writers[order].annotations}
        for index, record in enumerate(val.records):
            example = val.load_example(index)
            instance_categories = np.asarray(val.categories.thing_ids)[example["classes"] - 1]
            annotation = predictions[record.image_id]
            pred_ids = read_id_png(os.path.join(writers[order].out_dir,
                                                annotation["file_name"]), "prediction")
            reference.update(example["masks"].astype(bool), instance_categories,
                             read_id_png(record.png_file, "ground truth"),
                             list(record.segments), pred_ids, annotation["segments_info"])
        assert results[order]["ownership"] == reference.result()
    assert results["ranking"]["ownership"]["overlap_pixels"] > 0


def test_scored_images_hold_the_files(setup, evaluated):
    """on_image gets every image once, with the decoded file and PNG at the original size and
    the predictions that were written."""
    val = setup[2]
    writers, scored = evaluated[2:4]
    assert [s.image_id for s in scored] == [r.image_id for r in val.records]
    for item, record in zip(scored, val.records):
        np.testing.assert_array_equal(item.image, read_image(record.image_file))
        np.testing.assert_array_equal(item.gt_panoptic, read_id_png(record.png_file, "gt"))
        assert item.gt_segments == list(record.segments)
        for order in ORDERS:
            panoptic, segments = item.predictions[order]
            written, = [a for a in writers[order].annotations if a["image_id"] == item.image_id]
            assert segments == written["segments_info"]
            np.testing.assert_array_equal(panoptic, read_id_png(os.path.join(
                writers[order].out_dir, written["file_name"]), "prediction"))


def test_detection_quality_equals_the_detection_pass(setup, evaluated):
    """The detections scored along the merge equal those of model.detect on the training
    pipeline's evaluation batches (no ground truth at the original size, no post-processor)."""
    config, model, val = setup
    detect = tf.function(model.detect, reduce_retracing=True)
    expected = DetectionQuality(model.test_score_threshold)
    for batch in batches(build_dataset(val, config.data, training=False,
                                       batch_size=BATCH_SIZE, repeat=False)):
        detections = {k: v.numpy() for k, v in detect(batch["images"],
                                                      batch["image_size"]).items()}
        for i in range(int(batch["image_id"].shape[0])):
            expected.update(batch["gt_boxes"][i].numpy(), batch["gt_classes"][i].numpy(),
                            batch["gt_masks"][i].numpy() > 0, detections["boxes"][i],
                            detections["classes"][i], detections["scores"][i],
                            detections["instance_masks"][i] >= MASK_THRESHOLD)
    assert evaluated[4].result() == expected.result()


def test_coco_ap_equals_pycocotools_on_the_files(synthetic_dir):
    """The AP evaluate_model measures for the small trained model equals pycocotools'
    COCOeval run here on the split's instances JSON (read by pycocotools) and on
    model.detect's detections of the training pipeline's evaluation batches, scaled to each
    file's size in this test."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    trained = load_trained_model(TRAINED_SMALL, overrides=[f"data.synthetic_dir={synthetic_dir}"])
    model, config = trained.model, trained.config
    val = PanopticDataset.from_split(resolve_split(config.data, "val"))
    assert val.uses_instances_json
    coco_ap = CocoAP([c for c in val.categories.categories if c["isthing"]])
    evaluate_model(model, val, config.data, config.eval, BATCH_SIZE, progress=False,
                   coco_ap=coco_ap)
    ours = coco_ap.result()

    truth = COCO(val.instances_json)
    thing_ids = np.asarray(val.categories.thing_ids)
    detect = tf.function(model.detect, reduce_retracing=True)
    results = []
    for batch in batches(build_dataset(val, config.data, training=False,
                                       batch_size=BATCH_SIZE, repeat=False)):
        detections = detect(batch["images"], batch["image_size"])
        for i in range(int(batch["image_id"].shape[0])):
            (h, w), (rh, rw) = batch["original_size"][i].numpy(), batch["image_size"][i].numpy()
            for k in np.flatnonzero(detections["classes"][i].numpy() > 0):
                y1, x1, y2, x2 = detections["boxes"][i, k].numpy()
                x1, x2, y1, y2 = x1 * w / rw, x2 * w / rw, y1 * h / rh, y2 * h / rh
                probability = detections["instance_masks"][i, k, :rh, :rw, None]
                mask = tf.image.resize(probability, [h, w])[..., 0].numpy() >= MASK_THRESHOLD
                results.append({
                    "image_id": int(batch["image_id"][i]), "score": float(
                        detections["scores"][i, k]), "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "category_id": int(thing_ids[detections["classes"][i, k] - 1]),
                    "segmentation": mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))})
    for iou_type in ("bbox", "segm"):
        typed = [{k: v for k, v in r.items() if k != ("segmentation" if iou_type == "bbox"
                                                      else "bbox")} for r in results]
        evaluator = COCOeval(truth, truth.loadRes(typed), iou_type)
        evaluator.params.imgIds = [record.image_id for record in val.records]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        print(iou_type, dict(zip(STAT_NAMES, evaluator.stats[:6])))
        assert evaluator.stats[1] > 0.1, "the detections match nothing: the test shows nothing"
        np.testing.assert_allclose([ours[iou_type][n] for n in STAT_NAMES],
                                   evaluator.stats[:6], atol=1e-12, err_msg=iou_type)


def _mixed_sizes_split(root: str) -> PanopticDataset:
    """A val split of two synthetic images of different sizes (a landscape, a portrait)."""
    images, annotations = [], []
    for image_id, size in enumerate(MIXED_SIZES, start=1):
        source = os.path.join(root, f"source_{image_id}")
        make_synthetic_dataset(source, num_train=0, num_val=1, seed=image_id, size=size)
        data = read_json(os.path.join(source, "val", "panoptic.json"))
        image, annotation = data["images"][0], data["annotations"][0]
        for folder, name in (("images", image["file_name"]),
                             ("panoptic", annotation["file_name"])):
            os.makedirs(os.path.join(root, folder), exist_ok=True)
            shutil.copy(os.path.join(source, "val", folder, name),
                        os.path.join(root, folder, f"{image_id}_{name}"))
        images.append({**image, "id": image_id, "file_name": f"{image_id}_{image['file_name']}"})
        annotations.append({**annotation, "image_id": image_id,
                            "file_name": f"{image_id}_{annotation['file_name']}"})
    write_json(os.path.join(root, "panoptic.json"), {**data, "images": images,
                                                     "annotations": annotations})
    return PanopticDataset(os.path.join(root, "images"), os.path.join(root, "panoptic.json"),
                           os.path.join(root, "panoptic"))


def test_evaluation_batch_carries_the_decoded_files(setup, tmp_path):
    """Images of different sizes in one batch: each crop of the ground-truth keys is the
    example decoded from the files, zeros beyond it."""
    config = setup[0]
    dataset = _mixed_sizes_split(str(tmp_path))
    batch = next(iter(build_dataset(dataset, config.data, training=False,
                                    batch_size=len(MIXED_SIZES), ground_truth=True)))
    batch = {k: v.numpy() for k, v in batch.items()}
    assert batch["original_panoptic"].shape[1:] == tuple(np.max(MIXED_SIZES, axis=0))
    for index in range(len(MIXED_SIZES)):
        example = dataset.load_example(index, with_panoptic=True)
        assert len(example["classes"]) > 0
        for key, name in ORIGINAL_KEYS.items():
            value = batch[key][index]
            expected = np.zeros_like(value)
            expected[tuple(slice(0, n) for n in example[name].shape)] = example[name]
            np.testing.assert_array_equal(value, expected, err_msg=key)
