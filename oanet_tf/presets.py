"""Named models to start from (presets): name -> a local model dir, fetched and checked.

A preset is a config and categories shipped with the package (`preset_data/NAME/`; a converted
preset names a shipped config of configs/ instead) and a weights file: shipped beside them
(`synthetic_demo`, offline), or downloaded once with `keras.utils.get_file` into the Keras
cache (~/.keras/oanet_tf, or `cache_dir`) and converted there into a model dir
(`maskrcnn_r50_torchvision_coco`). Every weights file is checked
against its sha256 (or the prefix of it that its publisher names the file with) before use.

`resolve_preset` also takes what is not a preset name: a model dir or a `.keras` file, by
path, `file://` URL or (a `.keras` file) download URL. Nothing here imports TensorFlow until a
torchvision preset is converted, so `oanet_tf.list_presets()` stays cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.parse
import urllib.request

from oanet_tf.config import load_config, resolve_config
from oanet_tf.errors import OANetError
from oanet_tf.inference.trained_model import (CATEGORIES_FILE, CONFIG_FILE, LAST_WEIGHTS,
                                              read_categories)

PRESET_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "preset_data")
CACHE_SUBDIR = "oanet_tf"  # under the Keras cache (KERAS_HOME or ~/.keras), or cache_dir
OANET_WEIGHTS, TORCHVISION_WEIGHTS = "oanet", "torchvision"  # what a preset's weights are
KERAS_SUFFIX = ".keras"
HASH_CHUNK = 1 << 20
MIN_HASH_PREFIX = 8  # torchvision names its files with the first 8 hex digits of the sha256
TORCH_MISSING = ("needs PyTorch to convert torchvision's .pth on first use: "
                 "pip install 'oanet_tf[torch]'")


@dataclasses.dataclass(frozen=True)
class Preset:
    """weights: a path under PRESET_DATA (shipped) or a URL; sha256: its full hash, or the
    first hex digits of it the publisher names the file with (at least MIN_HASH_PREFIX);
    metrics: what was measured of it, with where; weights_format: OANET_WEIGHTS (a model
    dir's weights file) or TORCHVISION_WEIGHTS (converted on first use); shipped_config: the
    shipped config (by name) a converted preset is built with, in place of a config.yaml of
    its own."""

    name: str
    description: str
    weights: str
    sha256: str
    metrics: dict
    weights_format: str = OANET_WEIGHTS
    shipped_config: str = ""

    @property
    def data_dir(self) -> str:
        """The shipped folder of its config.yaml and categories.json."""
        return os.path.join(PRESET_DATA, self.name)

    @property
    def config(self) -> str:
        if self.shipped_config:
            return resolve_config(self.shipped_config)
        return os.path.join(self.data_dir, CONFIG_FILE)

    @property
    def categories(self) -> str:
        return os.path.join(self.data_dir, CATEGORIES_FILE)


PRESETS = {preset.name: preset for preset in (
    Preset(
        name="synthetic_demo",
        description="A small OANet (ResNet widths 8/16/32/64) trained 450 steps on the "
                    "synthetic data (5 things, 4 stuff, 128x128 images): shipped with the "
                    "package, for trying the API offline; it knows nothing of real images.",
        weights="synthetic_demo/checkpoints/last.weights.h5",
        sha256="a7d4e127b6b91f4dee0f796535ef5d06e6e892b89962dae558e74b0c2a17b9ee",
        metrics={"PQ": 54.5, "PQ_things": 35.9, "PQ_stuff": 77.8,
                 "measured_on": "the 50 synthetic val images (seed 0, 128x128), SRM "
                                "ranking merge, `python -m oanet_tf evaluate`"}),
    Preset(
        name="maskrcnn_r50_torchvision_coco",
        description="torchvision's COCO Mask R-CNN (maskrcnn_resnet50_fpn, COCO_V1 weights) "
                    "as OANet's instance branch, over the 133 COCO panoptic categories; "
                    "the stuff branch and the SRM are UNTRAINED (freshly initialised): "
                    "a start for training, its panoptic output is not meaningful as is. "
                    "Downloaded (170 MB) and converted on first use (needs torch).",
        weights="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        sha256="bf2d0c1e",  # torchvision publishes only this prefix (in the file name)
        metrics={"box_mAP": 37.9, "mask_mAP": 34.6,
                 "measured_on": "COCO val2017, torchvision's published numbers for these "
                                "weights (its own model)"},
        weights_format=TORCHVISION_WEIGHTS, shipped_config="coco_r50_torchvision"),
)}


def list_presets() -> dict:
    """{name: description} of every preset."""
    return {name: preset.description for name, preset in PRESETS.items()}


def resolve_preset(name_or_path: str, cache_dir: str | None = None) -> str:
    """A preset name, a model dir or `.keras` file (path or `file://` URL), or the URL of a
    `.keras` file -> a local model dir or `.keras` file, fetched and checked.

    cache_dir: where downloads and converted presets go (default: the Keras cache,
    ~/.keras); a shipped preset is read in place.
    """
    if name_or_path in PRESETS:
        return _materialise(PRESETS[name_or_path], cache_dir)
    url = urllib.parse.urlparse(name_or_path)
    if url.scheme == "file" and os.path.isdir(urllib.request.url2pathname(url.path)):
        return _local_source(urllib.request.url2pathname(url.path), name_or_path)
    if url.scheme in ("file", "http", "https"):
        # A file is fetched into the cache as a download would be.
        if not url.path.endswith(KERAS_SUFFIX):
            raise OANetError(f"{name_or_path}: a preset URL must name a model dir or a "
                             f"{KERAS_SUFFIX} file")
        return _download(name_or_path, cache_dir)
    if os.path.exists(name_or_path):
        return _local_source(name_or_path, name_or_path)
    raise OANetError(f"{name_or_path!r} is neither a preset nor an existing path; the presets: "
                     f"{', '.join(PRESETS)}")


def _local_source(path: str, given: str) -> str:
    """A model dir (with its config.yaml) or a `.keras` file; anything else is refused."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE)):
        return path
    if os.path.isfile(path) and path.endswith(KERAS_SUFFIX):
        return path
    raise OANetError(f"{given}: not a model dir (no {CONFIG_FILE}) nor a {KERAS_SUFFIX} file")


def _materialise(preset: Preset, cache_dir: str | None) -> str:
    """The preset's model dir: the shipped one, checked, or its download converted once."""
    if preset.weights_format == OANET_WEIGHTS:
        check_sha256(os.path.join(PRESET_DATA, preset.weights), preset.sha256)
        return preset.data_dir
    try:
        import torch  # noqa: F401  (only whether it is there: before a long download)
    except ImportError:
        raise OANetError(f"preset {preset.name} {TORCH_MISSING}") from None
    checkpoint = _download(preset.weights, cache_dir, preset.sha256)
    model_dir = os.path.join(os.path.dirname(checkpoint), preset.name)
    if not _converted(model_dir):
        _convert(preset, checkpoint, model_dir)
    return model_dir


def _converted(model_dir: str) -> bool:
    # The converter writes the weights last: their file marks a finished conversion.
    return os.path.isfile(os.path.join(model_dir, LAST_WEIGHTS))


def _convert(preset: Preset, checkpoint: str, model_dir: str):
    from oanet_tf.conversion.torchvision import convert

    convert(checkpoint, load_config(preset.config), read_categories(preset.categories),
            model_dir)


def _download(url: str, cache_dir: str | None, sha256: str | None = None) -> str:
    """keras.utils.get_file into the cache (once), then checked against `sha256`."""
    import keras

    name = os.path.basename(urllib.parse.urlparse(url).path)
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)  # Keras falls back to /tmp/.keras without it
    try:
        path = keras.utils.get_file(name, url, cache_subdir=CACHE_SUBDIR, cache_dir=cache_dir)
    except Exception as err:  # urllib's and Keras' errors of a failed download
        raise OANetError(f"{url}: download failed ({err})") from None
    if sha256:
        try:
            check_sha256(path, sha256)
        except OANetError:
            os.remove(path)  # so that the next call downloads it again
            raise
    return path


def check_sha256(path: str, expected: str):
    """OANetError naming `path` unless its sha256 is `expected` or starts with it (a prefix
    of at least MIN_HASH_PREFIX hex digits, as torchvision checks its files)."""
    if len(expected) < MIN_HASH_PREFIX:
        raise OANetError(f"sha256 {expected!r} for {path}: too short to check")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    actual = digest.hexdigest()
    if not actual.startswith(expected.lower()):
        raise OANetError(f"{path}: sha256 {actual} does not match the expected {expected} "
                         f"(a corrupt or different file)")
