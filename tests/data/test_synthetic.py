"""The synthetic COCO panoptic dataset: determinism, format validity checked from the files
alone, the person-and-tie pattern, class-ordered occlusions, and panopticapi's own verdict."""

import collections
import contextlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from oanet_tf.__main__ import main
from oanet_tf.cli.make_synthetic import parse_size
from oanet_tf.data.panoptic_format import rgb_to_id
from oanet_tf.data.synthetic import (BALL, BOTTLE, FRONT_TO_BACK, PERSON, SUITCASE, TIE,
                                     make_synthetic_dataset)
from oanet_tf.errors import DatasetError

SPLITS = ("train", "val")
THING_CLASSES = {PERSON, TIE, BALL, BOTTLE, SUITCASE}


def _tree(root):
    """{relative path: bytes} of every file under root."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def _load(path):
    with open(path) as f:
        return json.load(f)


def _quiet_coco(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(path)


def _reference_bbox(mask):
    """[x, y, w, h] of a non-empty mask with plain numpy (COCO: w = x_max - x_min + 1)."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1)]


def _check_categories(categories):
    ids = [c["id"] for c in categories]
    assert len(set(ids)) == len(ids)
    assert len({c["name"] for c in categories}) == len(categories)
    for c in categories:
        assert set(c) >= {"id", "name", "isthing", "color", "supercategory"}
        assert isinstance(c["id"], int) and c["id"] > 0
        assert c["isthing"] in (0, 1)
        assert len(c["color"]) == 3 and all(0 <= v <= 255 for v in c["color"])
    assert {c["id"] for c in categories if c["isthing"]} == THING_CLASSES
    assert sum(not c["isthing"] for c in categories) == 4


def _check_split(root, split, size):
    """Assert that a split is valid COCO panoptic + instances; return per-image records."""
    base = os.path.join(root, split)
    panoptic = _load(os.path.join(base, "panoptic.json"))
    _check_categories(panoptic["categories"])
    isthing = {c["id"]: c["isthing"] for c in panoptic["categories"]}
    assert [im["id"] for im in panoptic["images"]] == [a["image_id"]
                                                       for a in panoptic["annotations"]]
    records = []
    for image, ann in zip(panoptic["images"], panoptic["annotations"]):
        stem = f"{image['id']:012d}"
        assert image["file_name"] == stem + ".jpg" and ann["file_name"] == stem + ".png"
        assert (image["height"], image["width"]) == size
        jpeg = np.asarray(Image.open(os.path.join(base, "images", image["file_name"])))
        assert jpeg.shape == size + (3,) and jpeg.dtype == np.uint8
        png = Image.open(os.path.join(base, "panoptic", ann["file_name"]))
        assert png.mode == "RGB"
        ids = rgb_to_id(np.asarray(png))
        assert ids.shape == size
        segments = ann["segments_info"]
        listed = [s["id"] for s in segments]
        assert len(set(listed)) == len(listed) and 0 not in listed
        assert set(np.unique(ids[ids != 0]).tolist()) == set(listed)
        stuff_seen = collections.Counter()
        for s in segments:
            mask = ids == s["id"]
            assert s["area"] == int(mask.sum()), (split, stem, s)
            assert s["bbox"] == _reference_bbox(mask), (split, stem, s)
            assert s["category_id"] in isthing and s["iscrowd"] in (0, 1)
            if not isthing[s["category_id"]]:
                stuff_seen[s["category_id"]] += 1
                assert s["iscrowd"] == 0
            else:
                assert s["area"] >= 20  # tiny things are dropped
        assert max(stuff_seen.values()) == 1  # one segment per stuff class
        records.append({"image": image, "ids": ids, "segments": segments})

    instances = _load(os.path.join(base, "instances.json"))
    assert instances["images"] == panoptic["images"]
    assert {c["id"] for c in instances["categories"]} == THING_CLASSES
    coco = _quiet_coco(os.path.join(base, "instances.json"))
    annotation_ids = [a["id"] for a in instances["annotations"]]
    assert len(set(annotation_ids)) == len(annotation_ids)
    for record in records:
        objects = []
        for a in coco.loadAnns(coco.getAnnIds(imgIds=record["image"]["id"])):
            mask = coco.annToMask(a).astype(bool)
            assert mask.shape == size and a["area"] == int(mask.sum()) > 0
            assert a["bbox"] == pytest.approx(_reference_bbox(mask))
            assert isinstance(a["segmentation"]["counts"], str)
            objects.append({"category_id": a["category_id"], "iscrowd": a["iscrowd"],
                            "mask": mask})
        # Instances and visible thing segments correspond one to one per (class, crowd) ...
        seg_count = collections.Counter((s["category_id"], s["iscrowd"])
                                        for s in record["segments"] if isthing[s["category_id"]])
        assert seg_count == collections.Counter((o["category_id"], o["iscrowd"])
                                                for o in objects)
        # ... and every visible segment lies inside a whole mask of its class.
        for s in record["segments"]:
            if isthing[s["category_id"]]:
                visible = record["ids"] == s["id"]
                assert any(o["category_id"] == s["category_id"]
                           and not (visible & ~o["mask"]).any() for o in objects)
        category_of = {s["id"]: s["category_id"] for s in record["segments"]}
        category_of[0] = 0
        record["owner_category"] = np.vectorize(category_of.get)(record["ids"])
        record["objects"] = objects
    return panoptic, records


@pytest.fixture(scope="module")
def scene_statistics_dir(tmp_path_factory):
    """60 images of 96x128: enough to measure the scene statistics."""
    out = str(tmp_path_factory.mktemp("synthetic_stats"))
    make_synthetic_dataset(out, num_train=60, num_val=0, seed=5, size=(96, 128))
    return out


@pytest.fixture(scope="module")
def scene_records(scene_statistics_dir):
    return _check_split(scene_statistics_dir, "train", (96, 128))[1]


# ---------------------------------------------------------------------------- determinism

def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_synthetic_dataset(str(tmp_path / name), num_train=3, num_val=2, seed=seed,
                               size=(64, 96))
        runs[name] = _tree(str(tmp_path / name))
    assert len(runs["a"]) == 2 * (3 + 2) + 4  # a JPEG and a PNG per image, 2 JSONs per split
    assert runs["a"] == runs["b"]
    assert runs["a"].keys() == runs["c"].keys()
    differing = [path for path in runs["a"] if runs["a"][path] != runs["c"][path]]
    assert len(differing) == len(runs["a"])  # every image and every JSON changes


def test_regenerating_in_place_overwrites_and_splits_are_independent(tmp_path):
    make_synthetic_dataset(str(tmp_path / "fresh"), num_train=1, num_val=2, seed=7,
                           size=(64, 64))
    make_synthetic_dataset(str(tmp_path / "reused"), num_train=4, num_val=2, seed=8,
                           size=(64, 64))
    make_synthetic_dataset(str(tmp_path / "reused"), num_train=4, num_val=2, seed=7,
                           size=(64, 64))
    fresh, reused = _tree(str(tmp_path / "fresh")), _tree(str(tmp_path / "reused"))
    # The val split depends on (seed, index) only, not on the number of train images.
    val_files = [p for p in fresh if p.startswith("val")]
    assert val_files and all(fresh[p] == reused[p] for p in val_files)
    first_train = os.path.join("train", "images", f"{1:012d}.jpg")
    assert fresh[first_train] == reused[first_train]


# ---------------------------------------------------------------------------- format

@pytest.mark.parametrize("size", [(96, 128), (128, 128), (32, 48), (512, 384)])
def test_format_is_valid_at_various_sizes(tmp_path, size):
    count = 4 if max(size) <= 128 else 1
    summary = make_synthetic_dataset(str(tmp_path), num_train=count, num_val=1, seed=1,
                                     size=size)
    assert summary["num_images"] == count + 1 and summary["images_per_minute"] > 0
    image_ids = []
    for split in SPLITS:
        panoptic, records = _check_split(str(tmp_path), split, size)
        assert len(records) == summary[split]["images"]
        assert summary[split]["segments"] == sum(len(r["segments"]) for r in records)
        assert summary[split]["instances"] == sum(len(r["objects"]) for r in records)
        assert os.path.samefile(summary[split]["panoptic_json"],
                                tmp_path / split / "panoptic.json")
        image_ids += [im["id"] for im in panoptic["images"]]
    assert len(set(image_ids)) == len(image_ids)  # unique across splits


def test_shared_fixture_dataset_is_valid(synthetic_dir):
    image_ids = []
    for split in SPLITS:
        panoptic, _ = _check_split(synthetic_dir, split, (96, 128))
        image_ids += [im["id"] for im in panoptic["images"]]
    assert len(image_ids) == 18 and len(set(image_ids)) == 18


def test_empty_split_is_written(tmp_path):
    make_synthetic_dataset(str(tmp_path), num_train=0, num_val=1, seed=0, size=(64, 64))
    assert _load(tmp_path / "train" / "panoptic.json")["annotations"] == []
    assert _load(tmp_path / "train" / "instances.json")["annotations"] == []
    assert len(_check_split(str(tmp_path), "val", (64, 64))[1]) == 1


@pytest.mark.parametrize("kwargs, words", [
    ({"size": (16, 128)}, "size"),
    ({"size": (64,)}, "size"),
    ({"num_train": -1}, "num_train"),
    ({"num_val": 2.5}, "num_val"),
    ({"seed": -3}, "seed"),
])
def test_bad_arguments_are_rejected(tmp_path, kwargs, words):
    arguments = dict(out_dir=str(tmp_path), num_train=1, num_val=1, seed=0, size=(64, 64))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=words):
        make_synthetic_dataset(**arguments)
    assert not os.listdir(tmp_path)


def test_output_path_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    with pytest.raises(DatasetError, match="taken: it is a file"):
        make_synthetic_dataset(str(path), num_train=1, num_val=0, seed=0, size=(64, 64))
    assert main(["make-synthetic", "--out", str(path), "--train", "1", "--val", "0"]) == 2
    assert "it is a file, not a folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------- content

def test_scene_statistics(scene_records):
    things = [sum(not o["iscrowd"] for o in r["objects"]) for r in scene_records]
    assert max(things) <= 8 and 3 <= np.median(things) <= 8
    crowded = sum(any(o["iscrowd"] for o in r["objects"]) for r in scene_records)
    assert 1 <= crowded <= 0.25 * len(scene_records)
    void = np.mean([np.mean(r["ids"] == 0) for r in scene_records])
    assert 0 < void < 0.05
    counts = collections.Counter(o["category_id"] for r in scene_records for o in r["objects"]
                                 if not o["iscrowd"])
    assert counts[PERSON] == max(counts.values())  # the frequent class
    assert 0 < counts[TIE] < counts[PERSON]  # the rarer class
    stuff = collections.Counter(s["category_id"] for r in scene_records for s in r["segments"]
                                if s["category_id"] not in THING_CLASSES)
    assert len(stuff) == 4 and min(stuff.values()) >= 0.2 * len(scene_records)


def test_covered_instances_keep_whole_masks(scene_records):
    covered = total = 0
    for r in scene_records:
        for o in r["objects"]:
            total += 1
            owners = r["owner_category"][o["mask"]]
            # Pixels of the whole mask that the PNG gives to a thing of another class.
            covered += bool(np.isin(owners, list(THING_CLASSES - {o["category_id"]})).any())
    assert covered >= 0.25 * total


def test_ties_lie_on_persons_and_on_top(scene_records):
    ties = on_top = 0
    for r in scene_records:
        persons = [o["mask"] for o in r["objects"] if o["category_id"] == PERSON]
        for o in r["objects"]:
            if o["category_id"] != TIE:
                continue
            ties += 1
            for person in persons:
                overlap = o["mask"] & person
                owners = r["owner_category"][overlap]
                if (overlap.any() and not (o["mask"] & ~person).any()
                        and (owners == TIE).any() and not (owners == PERSON).any()):
                    on_top += 1
                    break
    assert ties >= 15
    assert on_top / ties >= 0.9


def test_pairwise_occlusions_follow_the_class_depth_order(scene_records):
    rank = {category: i for i, category in enumerate(FRONT_TO_BACK)}
    pairs = in_order = 0
    for r in scene_records:
        objects = [o for o in r["objects"] if not o["iscrowd"]]
        for i, a in enumerate(objects):
            for b in objects[i + 1:]:
                classes = {a["category_id"], b["category_id"]}
                if len(classes) == 1 or classes == {PERSON, TIE}:
                    continue
                owners = r["owner_category"][a["mask"] & b["mask"]]
                shown_a = int((owners == a["category_id"]).sum())
                shown_b = int((owners == b["category_id"]).sum())
                if shown_a == shown_b == 0:
                    continue
                pairs += 1
                top = a if shown_a > shown_b else b
                in_order += top["category_id"] == min(classes, key=rank.get)
    assert pairs >= len(scene_records)  # at least one occluding pair per image on average
    assert 0.75 <= in_order / pairs < 1.0  # mostly, not always, the class order


def test_ground_truth_against_itself_scores_pq_100_with_panopticapi(synthetic_dir):
    from panopticapi.evaluation import pq_compute

    gt_json = os.path.join(synthetic_dir, "val", "panoptic.json")
    gt_dir = os.path.join(synthetic_dir, "val", "panoptic")
    with contextlib.redirect_stdout(io.StringIO()):
        result = pq_compute(gt_json, gt_json, gt_dir, gt_dir)
    for group in ("All", "Things", "Stuff"):
        assert result[group]["pq"] == pytest.approx(1.0, abs=1e-12)
        assert result[group]["n"] > 0


# ---------------------------------------------------------------------------- command line

def test_cli_writes_dataset_and_summary(tmp_path, capsys):
    out = str(tmp_path / "cli")
    assert main(["make-synthetic", "--out", out, "--train", "2", "--val", "1", "--seed", "2",
                 "--size", "48x64"]) == 0
    printed = capsys.readouterr().out
    assert "3 images of 48x64" in printed and "images/minute" in printed
    assert os.path.join(out, "train", "panoptic.json") in printed
    _check_split(out, "train", (48, 64))
    direct = str(tmp_path / "direct")
    make_synthetic_dataset(direct, num_train=2, num_val=1, seed=2, size=(48, 64))
    assert _tree(out) == _tree(direct)


@pytest.mark.parametrize("text, expected", [("128x128", (128, 128)), ("96X160", (96, 160)),
                                            (" 64 x 32 ", (64, 32))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("argument, message", [
    ("128", "expected HEIGHTxWIDTH"), ("axb", "expected HEIGHTxWIDTH"),
    ("16x128", "at least 32 pixels"),
])
def test_cli_rejects_bad_size(tmp_path, capsys, argument, message):
    with pytest.raises(SystemExit) as info:
        main(["make-synthetic", "--out", str(tmp_path), "--train", "1", "--val", "1",
              "--size", argument])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path)
