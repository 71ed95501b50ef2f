"""Time OANet (R50) against torchvision's Mask R-CNN R50-FPN on this machine's CPU.

Ours: the coco_r50 config with random weights. Inference is the whole panoptic path
(PanopticPredictor: OANet.detect with the stuff branch and the SRM, then the merge); the train
step is OANet.train_step (every loss of Eq. 1, SGD update) in a tf.function compiled as
model.fit compiles it (the config's train.jit_compile). Theirs: torchvision's
maskrcnn_resnet50_fpn(weights=None, weights_backbone=None) with box_score_thresh=0, so that the
mask head always runs on 100 detections, and its transform set to keep the input size (no
resize); the train step is its losses, backward and an SGD step on random targets. Our
test_score_threshold is set to 0 as well, so both run NMS on every candidate.

Torch runs in a second process (the benchmark venv's python, which runs this file with
--torch-worker) that stays up for the whole run; the two alternate call by call (one timed
call of ours, one of theirs, ...), so both see the same machine load. Every case gets
--warmup untimed calls each, then --repeats timed calls; the median is reported.
--breakdown also times the parts of our batch-1 inference alone, each on our model's own
outputs: backbone+FPN (and theirs), the dense part, detect, the whole predictor, RoIAlign
and the box head at 1000 boxes, RoIAlign and the mask head at 100, paste_masks, the SRM and
its inputs, the ranking scores, the stuff probabilities and the merge; "rest" is detect minus
its timed parts (proposal selection, NMS, box decoding).

    python scripts/benchmark_model.py [--sizes 512x512 800x1344] [--batches 1 2]
        [--modes infer train] [--repeats 3] [--warmup 1] [--breakdown]
        [--torch-python /tmp/bench-venv/bin/python] [--out runs/benchmark_model.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TORCH_PYTHON = "/tmp/bench-venv/bin/python"
DEFAULT_CATEGORIES = "/work/shared/coco/panoptic_coco_categories.json"
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "coco_r50.yaml")
# serve: encoded JPEG bytes in, results out (ours: the export's serving function, with the
# panoptic merge at the original size; theirs: decode_jpeg + the model); infer: the model
# (and our merge) on decoded tensors; train: one training step.
MODES = ("serve", "infer", "train")
JPEG_QUALITY = 90
DEFAULT_SIZE = (512, 512)  # the default run (2 batch sizes, 2 modes) fits in ~15 min on 2 cores
# Parts of OANet.detect timed alone by --breakdown (the rest of detect is their difference).
DETECT_PARTS = ("dense", "roi_align_box", "box_head", "roi_align_mask", "mask_head",
                "paste_masks", "srm_inputs", "srm", "ranking_scores", "stuff_probabilities")
# OpenMP threads that spin while waiting lose most of their time when another process holds
# a core (measured here: ResNet-50 at 256x256 took 2.5 s instead of 0.2 s); passive waiting
# keeps torch's timings meaningful on a shared machine.
TORCH_OMP_WAIT_POLICY = "PASSIVE"
PIXEL_MAX = 255.0
MIN_BOX_SIDE = 16  # random instance boxes: sides between this and half the image side
MAX_BOX_FRACTION = 0.5
TORCH_LEARNING_RATE = 0.0025  # irrelevant to the timing; small enough to stay finite
TORCH_MOMENTUM = 0.9
TORCH_WEIGHT_DECAY = 1e-4


# ------------------------------------------------------------------------ shared (numpy only)
def parse_size(text: str) -> tuple:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 512x512")
    return height, width


def random_images(seed: int, batch: int, height: int, width: int):
    """[B, H, W, 3] float32 pixels 0..255, the same in both processes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, PIXEL_MAX, size=(batch, height, width, 3)).astype(np.float32)


def random_instances(seed: int, batch: int, height: int, width: int, count: int,
                     num_things: int):
    """Random rectangular instances, the same in both processes (overlaps included).

    -> boxes [B, N, 4] float32 (y1, x1, y2, x2), classes [B, N] int32 (1..num_things),
    masks [B, N, H, W] uint8 (the filled boxes).
    """
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    boxes = np.zeros((batch, count, 4), np.float32)
    masks = np.zeros((batch, count, height, width), np.uint8)
    for b in range(batch):
        for i in range(count):
            box_h = int(rng.integers(MIN_BOX_SIDE, max(MIN_BOX_SIDE + 1,
                                                       int(height * MAX_BOX_FRACTION))))
            box_w = int(rng.integers(MIN_BOX_SIDE, max(MIN_BOX_SIDE + 1,
                                                       int(width * MAX_BOX_FRACTION))))
            y1 = int(rng.integers(0, height - box_h))
            x1 = int(rng.integers(0, width - box_w))
            boxes[b, i] = (y1, x1, y1 + box_h, x1 + box_w)
            masks[b, i, y1:y1 + box_h, x1:x1 + box_w] = 1
    classes = rng.integers(1, num_things + 1, size=(batch, count)).astype(np.int32)
    return boxes, classes, masks


def encoded_jpeg(seed: int, height: int, width: int) -> bytes:
    """A JPEG of random pixels (PIL, the same bytes in both processes)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    pixels = random_images(seed, 1, height, width)[0].astype("uint8")
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def median(values):
    return statistics.median(values) if values else float("nan")


def graph_function(function):
    """tf.function without AutoGraph: the timed parts are plain TF code, and AutoGraph
    cannot read the source of lambdas defined side by side."""
    import tensorflow as tf

    return tf.function(function, autograph=False)


def timed_calls(call, count: int) -> list:
    """Wall seconds of `count` calls of a zero-argument callable."""
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


# ---------------------------------------------------------------------- torch worker process
class TorchWorker:
    """Runs in the benchmark venv: builds torchvision's Mask R-CNN and times one call of a
    prepared case per request. Requests and replies are JSON lines on stdin / stdout."""

    def __init__(self, threads: int):
        import torch
        import torchvision

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.model = torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, box_score_thresh=0.0)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=TORCH_LEARNING_RATE,
                                         momentum=TORCH_MOMENTUM,
                                         weight_decay=TORCH_WEIGHT_DECAY)
        self.versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "torch_threads": torch.get_num_threads(),
                         "torch_omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                         "torchvision_parameters": sum(p.numel()
                                                       for p in self.model.parameters())}
        self.call = None

    def prepare(self, mode, height, width, batch, seed, instances, num_things):
        torch = self.torch
        # Keep the input size: the transform resizes so that the short side is min_size
        # unless the long side would exceed max_size; both are the input's own sides here.
        self.model.transform.min_size = (min(height, width),)
        self.model.transform.max_size = max(height, width)
        pixels = random_images(seed, batch, height, width) / PIXEL_MAX
        images = [torch.from_numpy(p).permute(2, 0, 1).contiguous() for p in pixels]
        if mode == "infer":
            self.model.eval()

            def call():
                with torch.inference_mode():
                    return self.model(images)
        elif mode == "serve":
            import torchvision

            self.model.eval()
            data = torch.frombuffer(bytearray(encoded_jpeg(seed, height, width)),
                                    dtype=torch.uint8)

            def call():
                with torch.inference_mode():
                    decoded = [torchvision.io.decode_jpeg(data).float() / PIXEL_MAX
                               for _ in range(batch)]
                    return self.model(decoded)
        elif mode == "backbone_fpn":
            self.model.eval()
            normalized = self.model.transform(images)[0].tensors

            def call():
                with torch.inference_mode():
                    return self.model.backbone(normalized)
        else:
            self.model.train()
            boxes, classes, masks = random_instances(seed, batch, height, width, instances,
                                                     num_things)
            targets = [{"boxes": torch.from_numpy(b[:, [1, 0, 3, 2]].copy()),
                        "labels": torch.from_numpy(c.astype("int64")),
                        "masks": torch.from_numpy(m)}
                       for b, c, m in zip(boxes, classes, masks)]

            def call():
                losses = self.model(images, targets)
                total = sum(losses.values())
                self.optimizer.zero_grad()
                total.backward()
                self.optimizer.step()
                return total.detach().item()
        self.call = call


def torch_worker_main(threads: int) -> int:
    """The --torch-worker loop: {"op": "versions" | "prepare" | "time", ...} per line."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything torch prints stays off the reply channel
    worker = TorchWorker(threads)
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "versions":
            reply = worker.versions
        elif op == "prepare":
            worker.prepare(**request)
            reply = {"ok": True}
        elif op == "time":
            reply = {"seconds": timed_calls(worker.call, request["count"])}
        else:
            reply = {"error": f"unknown op {op!r}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    return 0


class TorchClient:
    """The parent's handle on the torch worker process."""

    def __init__(self, python: str, threads: int, omp_wait_policy: str):
        if not os.path.isfile(python):
            raise SystemExit(
                f"error: torch python not found: {python}; create the benchmark venv with "
                f"`python -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install "
                f"torch==2.14.1 torchvision==0.29.1`, or pass --torch-python")
        env = dict(os.environ)
        if omp_wait_policy:
            env["OMP_WAIT_POLICY"] = omp_wait_policy
        self.process = subprocess.Popen(
            [python, os.path.abspath(__file__), "--torch-worker", "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def request(self, op: str, **kwargs):
        self.process.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the torch worker exited (code {self.process.wait()}); "
                               f"see its messages above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"torch worker: {reply['error']}")
        return reply

    def time(self, count: int) -> list:
        """Seconds of `count` calls of the prepared case."""
        return self.request("time", count=count)["seconds"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


# --------------------------------------------------------------------------------- ours (TF)
class OursBench:
    """Our R50 model at one padded size, and one prepared call at a time."""

    def __init__(self, config_path, categories_path, size, overrides, jit_compile):
        import keras

        from oanet_tf.config import load_config
        from oanet_tf.modeling.builder import build_oanet
        from oanet_tf.training.schedule import build_optimizer

        sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
        from model_report import load_categories

        height, width = size
        self.categories = load_categories(categories_path)
        self.config = load_config(config_path, [
            f"data.padded_size=[{height}, {width}]", "model.test_score_threshold=0.0",
            *overrides])
        if jit_compile != "config":
            self.config.train.jit_compile = jit_compile
        keras.utils.set_random_seed(self.config.train.seed)
        self.model = build_oanet(self.config.model, self.config.train, self.categories,
                                 self.config.data.padded_size)
        self.model.compile(optimizer=build_optimizer(self.config.train),
                           jit_compile={"auto": "auto", "true": True,
                                        "false": False}[self.config.train.jit_compile])
        self.size = (height, width)
        self.call = None
        self._train_step = None
        self._predictor = None

    @property
    def jit_compile(self):
        return bool(self.model.jit_compile)

    def predictor(self):
        from oanet_tf.inference.predictor import PanopticPredictor

        if self._predictor is None:
            self._predictor = PanopticPredictor(self.model, self.config.eval)
        return self._predictor

    def serving_function(self):
        """The function behind the export's serving_default signature (string batch in)."""
        import tensorflow as tf

        from oanet_tf.export.saved_model import ServingGraph

        graph = ServingGraph(self.model, self.categories, self.config.data, self.config.eval,
                             self.config.export.max_image_side)
        return tf.function(graph.from_encoded, reduce_retracing=True)

    def train_batch(self, batch, seed, instances):
        """A training batch in the layout of docs/ARCHITECTURE.md, random instances."""
        import numpy as np
        import tensorflow as tf

        from oanet_tf.data.panoptic_format import IGNORE_LABEL

        height, width = self.size
        things, stuff = self.categories.num_things, self.categories.num_stuff
        slots = self.config.data.max_instances
        boxes, classes, masks = random_instances(seed, batch, height, width, instances, things)
        rng = np.random.default_rng(seed + 2)
        semantic = np.repeat(things + rng.integers(0, stuff, size=(batch, 1, 1)), height, 1)
        semantic = np.repeat(semantic, width, 2).astype(np.int32)
        owner = np.full((batch, height, width), IGNORE_LABEL, np.int32)
        for b in range(batch):
            for i in range(instances):  # later instances lie on top
                inside = masks[b, i] == 1
                semantic[b][inside] = classes[b, i] - 1
                owner[b][inside] = classes[b, i] - 1
        pad = slots - instances

        def padded(array):
            return np.pad(array, [(0, 0), (0, pad)] + [(0, 0)] * (array.ndim - 2))

        size = np.array([[height, width]] * batch, np.int32)
        return {"images": tf.constant(random_images(seed, batch, height, width)),
                "gt_boxes": tf.constant(padded(boxes)),
                "gt_classes": tf.constant(padded(classes)),
                "gt_masks": tf.constant(padded(masks)),
                "gt_count": tf.constant([instances] * batch, tf.int32),
                "semantic": tf.constant(semantic), "owner": tf.constant(owner),
                "image_id": tf.constant(np.arange(batch, dtype=np.int64)),
                "original_size": tf.constant(size), "image_size": tf.constant(size)}

    def prepare(self, mode, batch, seed, instances):
        import numpy as np
        import tensorflow as tf

        height, width = self.size
        if mode == "serve":
            serve = self.serving_function()
            encoded = tf.constant([encoded_jpeg(seed, height, width)] * batch)

            def call():
                return serve(encoded)["num_segments"].numpy()
        elif mode == "infer":
            images = tf.constant(random_images(seed, batch, height, width))
            size = tf.constant(np.array([[height, width]] * batch, np.int32))
            predictor = self.predictor()

            def call():
                detections, _ = predictor(images, size, size)
                return detections["num_detections"].numpy()
        else:
            if self._train_step is None:
                self._train_step = tf.function(self.model.train_step, reduce_retracing=True,
                                               jit_compile=self.jit_compile)
            data = self.train_batch(batch, seed, instances)
            step = self._train_step

            def call():
                return float(step(data)["loss"])
        self.call = call

    def merge_only(self, detections):
        """A PanopticPredictor whose detect returns `detections`: it times the merge alone."""
        from oanet_tf.inference.predictor import PanopticPredictor

        return PanopticPredictor(FixedDetections(detections, self.model.num_things),
                                 self.config.eval)

    def train_part_calls(self, seed, instances):
        """{part: zero-argument callable} for the train-step breakdown, batch 1: forward and
        backward (gradients of the summed outputs) of each piece alone, at the sizes of the
        step (sampled RoIs for the box head, the most positives for the mask head)."""
        import tensorflow as tf

        from oanet_tf.modeling.oanet import ROI_LEVELS
        from oanet_tf.ops import mask_ops

        model = self.model
        height, width = self.size
        data = self.train_batch(1, seed, instances)
        self.prepare("train", 1, seed, instances)
        features = model(data["images"], training=False)["features"][
            :ROI_LEVELS[1] - ROI_LEVELS[0] + 1]
        rois = model.roi_batch_size_per_image
        positives = int(rois * model.roi_positive_fraction)
        box_rois = tf.constant(random_instances(seed, 1, height, width, rois, 1)[0])
        mask_rois = box_rois[:, :positives]
        matched = tf.zeros([1, positives], tf.int32)

        def pool(boxes, resolution):  # the model's own RoIAlign method
            return model._roi_align(features, boxes, resolution)

        dense_variables = [v for layer in (model.backbone, model.fpn, model.rpn_head,
                                           model.stuff_head)
                           for v in layer.trainable_variables]
        box_pooled = pool(box_rois, model.box_pooler_resolution)
        mask_pooled = pool(mask_rois, model.mask_pooler_resolution)

        def gradients(forward, sources, watch=False):
            """Gradients of the sum of forward()'s outputs; watch: sources are tensors."""
            with tf.GradientTape() as tape:
                if watch:
                    tape.watch(sources)
                total = tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32))
                                  for t in tf.nest.flatten(forward())])
            return [g for g in tf.nest.flatten(tape.gradient(total, sources)) if g is not None]

        def srm_loss():  # the model's own path (sparse without XLA)
            return model._srm_loss(data["gt_masks"], tf.cast(data["gt_classes"], tf.int32),
                                   data["owner"], training=True)

        functions = {
            "train_step": self.call,
            "dense_fwd_bwd": lambda: gradients(
                lambda: model(data["images"], training=True), dense_variables),
            "roi_align_box_fwd_bwd": lambda: gradients(
                lambda: pool(box_rois, model.box_pooler_resolution), features, watch=True),
            "box_head_fwd_bwd": lambda: gradients(
                lambda: model.box_head(box_pooled, training=True),
                model.box_head.trainable_variables),
            "roi_align_mask_fwd_bwd": lambda: gradients(
                lambda: pool(mask_rois, model.mask_pooler_resolution), features, watch=True),
            "mask_head_fwd_bwd": lambda: gradients(
                lambda: model.mask_head(mask_pooled, training=True),
                model.mask_head.trainable_variables),
            "mask_targets": lambda: mask_ops.mask_targets(data["gt_masks"], matched, mask_rois),
            "srm_inputs_srm_loss_fwd_bwd": lambda: gradients(
                srm_loss, model.srm.trainable_variables),
        }

        def runner(name, function):
            if name == "train_step":
                return function
            compiled = graph_function(function)
            return lambda: tf.nest.map_structure(lambda t: t.numpy(), compiled())

        return {name: runner(name, function) for name, function in functions.items()}

    def part_calls(self, seed):
        """{part: zero-argument callable} for the inference breakdown, batch 1; the inputs of
        each part are our model's own outputs on a random image."""
        import numpy as np
        import tensorflow as tf

        from oanet_tf.modeling import srm as srm_lib
        from oanet_tf.modeling.oanet import ROI_LEVELS
        from oanet_tf.ops import mask_ops

        model = self.model
        height, width = self.size
        images = tf.constant(random_images(seed, 1, height, width))
        size = tf.constant(np.array([[height, width]], np.int32))
        dense = graph_function(lambda x: model(x, training=False))
        detect = graph_function(model.detect)
        detections = detect(images)
        outputs = dense(images)
        features = outputs["features"][:ROI_LEVELS[1] - ROI_LEVELS[0] + 1]
        # The box head's input: as many boxes as proposals, spread over the image.
        proposals = tf.constant(random_instances(
            seed, 1, height, width, model.rpn_post_nms_topk_test, 1)[0])

        def pool(boxes, resolution):  # the model's own RoIAlign method
            return model._roi_align(features, boxes, resolution)

        box_pooled = pool(proposals, model.box_pooler_resolution)
        mask_pooled = pool(detections["boxes"], model.mask_pooler_resolution)
        binary = tf.cast(detections["instance_masks"] >= srm_lib.MASK_THRESHOLD, tf.float32)
        channels, _ = srm_lib.srm_inputs(binary, detections["classes"], model.num_things)
        functions = {
            "backbone_fpn": (graph_function(lambda x: model.fpn(model.backbone(x))), (images,)),
            "dense": (dense, (images,)),
            "detect": (detect, (images,)),
            "full": (self.predictor(), (images, size, size)),
            "merge": (self.merge_only(detections), (images, size, size)),
            "roi_align_box": (graph_function(lambda b: pool(b, model.box_pooler_resolution)),
                              (proposals,)),
            "box_head": (graph_function(lambda p: model.box_head(p, training=False)),
                         (box_pooled,)),
            "roi_align_mask": (graph_function(lambda b: pool(b, model.mask_pooler_resolution)),
                               (detections["boxes"],)),
            "mask_head": (graph_function(lambda p: model.mask_head(p, training=False)),
                          (mask_pooled,)),
            "paste_masks": (graph_function(lambda m, b: mask_ops.paste_masks(m, b, self.size)),
                            (detections["masks"], detections["boxes"])),
            "srm_inputs": (graph_function(lambda m, c: srm_lib.srm_inputs(m, c, model.num_things)),
                           (binary, detections["classes"])),
            "srm": (graph_function(model._ranking_map), (channels,)),  # as detect runs it
            "ranking_scores": (graph_function(srm_lib.ranking_scores),
                               (detections["ranking_map"], binary, detections["classes"])),
            "stuff_probabilities": (graph_function(model.stuff_probabilities),
                                    (outputs["semantic_logits"],)),
        }

        def runner(function, args):
            return lambda: tf.nest.map_structure(lambda t: t.numpy(), function(*args))

        return {name: runner(function, args) for name, (function, args) in functions.items()}


class FixedDetections:
    """Stands in for the model in PanopticPredictor: detect returns fixed detections."""

    def __init__(self, detections, num_things):
        self.detections = detections
        self.num_things = num_things

    def detect(self, images):
        del images
        return self.detections


# ------------------------------------------------------------------------------ the benchmark
def interleaved(ours_call, torch_time, warmup: int, repeats: int):
    """Warm-up calls of each, then alternating timed calls -> (ours seconds, theirs seconds).
    torch_time(count) times the torch worker's prepared case; None: ours only."""
    for _ in range(warmup):
        ours_call()
        if torch_time:
            torch_time(1)
    ours, theirs = [], []
    for _ in range(repeats):
        ours.extend(timed_calls(ours_call, 1))
        if torch_time:
            theirs.extend(torch_time(1))
    return ours, theirs


def case_row(size, batch, mode, ours, theirs) -> dict:
    row = {"size": list(size), "batch": batch, "mode": mode,
           "ours_seconds": median(ours), "ours_all_seconds": ours,
           "torchvision_seconds": median(theirs) if theirs else None,
           "torchvision_all_seconds": theirs}
    row["ratio"] = (row["ours_seconds"] / row["torchvision_seconds"]
                    if theirs else None)
    return row


def breakdown(bench: OursBench, torch_client, seed, warmup, repeats) -> dict:
    """Seconds of each part of our batch-1 inference, and torchvision's backbone + FPN."""
    parts = bench.part_calls(seed)
    height, width = bench.size
    result = {}
    for name, call in parts.items():
        torch_time = None
        if name == "backbone_fpn" and torch_client is not None:
            torch_client.request("prepare", mode="backbone_fpn", height=height, width=width,
                                 batch=1, seed=seed, instances=0, num_things=0)
            torch_time = torch_client.time
        ours, theirs = interleaved(call, torch_time, warmup, repeats)
        result[name] = median(ours)
        if theirs:
            result["torchvision_backbone_fpn"] = median(theirs)
    result["proposals, nms, decoding, rest (detect - parts)"] = (
        result["detect"] - sum(result[k] for k in DETECT_PARTS))
    result["rpn head + stuff head (dense - backbone_fpn)"] = (
        result["dense"] - result["backbone_fpn"])
    return result


def train_breakdown(bench: OursBench, seed, instances, warmup, repeats) -> dict:
    """Seconds of our batch-1 train step and of its heaviest pieces alone."""
    result = {name: median(interleaved(call, None, warmup, repeats)[0])
              for name, call in bench.train_part_calls(seed, instances).items()}
    pieces = [name for name in result if name != "train_step"]
    result["rest: proposals, matching, sampling, losses, update (step - pieces)"] = (
        result["train_step"] - sum(result[k] for k in pieces))
    return result


def format_table(rows) -> str:
    lines = [f"{'size':>10} {'batch':>5} {'mode':>6} {'ours (s)':>10} {'torchvision (s)':>16} "
             f"{'ours/tv':>8}"]
    for row in rows:
        theirs = (f"{row['torchvision_seconds']:16.3f}" if row["torchvision_seconds"]
                  is not None else f"{'-':>16}")
        ratio = f"{row['ratio']:8.2f}" if row["ratio"] is not None else f"{'-':>8}"
        lines.append(f"{row['size'][0]:>5}x{row['size'][1]:<4} {row['batch']:>5} "
                     f"{row['mode']:>6} {row['ours_seconds']:10.3f} {theirs} {ratio}")
    return "\n".join(lines)


def machine_load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"load_1min": one, "load_5min": five, "load_15min": fifteen}


def load_line(report: dict) -> str:
    """The machine load a report saw, in words."""
    return (f"load average before {report['load_before']['load_1min']:.2f}, after "
            f"{report['load_after']['load_1min']:.2f} (1 min) on {report['cpu_count']} cores")


def run(args) -> dict:
    import keras
    import tensorflow as tf

    from oanet_tf.fileio import write_json

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch_client = None if args.no_torch else TorchClient(
        args.torch_python, args.threads, args.torch_omp_wait_policy)
    report = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
              "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
              "config": args.config, "warmup": args.warmup, "repeats": args.repeats,
              "instances_per_image": args.instances, "seed": args.seed,
              "load_before": machine_load(), "cases": [], "breakdown": {},
              "train_breakdown": {}}
    if torch_client is not None:
        report.update(torch_client.request("versions"))
    started = time.perf_counter()
    try:
        for size in args.sizes:
            bench = OursBench(args.config, args.categories, size, args.overrides, args.jit)
            report["ours_jit_compile_train"] = bench.jit_compile
            report["ours_parameters"] = int(bench.model.count_params())
            for mode in args.modes:
                for batch in args.batches:
                    bench.prepare(mode, batch, args.seed, args.instances)
                    torch_time = None
                    if torch_client is not None:
                        torch_client.request("prepare", mode=mode, height=size[0],
                                             width=size[1], batch=batch, seed=args.seed,
                                             instances=args.instances,
                                             num_things=bench.categories.num_things)
                        torch_time = torch_client.time
                    ours, theirs = interleaved(bench.call, torch_time, args.warmup,
                                               args.repeats)
                    row = case_row(size, batch, mode, ours, theirs)
                    report["cases"].append(row)
                    print(format_table([row]).splitlines()[1], flush=True)
            if args.breakdown:
                key = f"{size[0]}x{size[1]}"
                if "infer" in args.modes:
                    parts = breakdown(bench, torch_client, args.seed, args.warmup,
                                      args.repeats)
                    report["breakdown"][key] = parts
                    print(format_breakdown(f"inference at {key}", parts), flush=True)
                if "train" in args.modes:
                    parts = train_breakdown(bench, args.seed, args.instances, args.warmup,
                                            args.repeats)
                    report["train_breakdown"][key] = parts
                    print(format_breakdown(f"train step at {key}", parts), flush=True)
            del bench
            keras.backend.clear_session()
    finally:
        if torch_client is not None:
            torch_client.close()
    report["load_after"] = machine_load()
    report["wall_seconds"] = time.perf_counter() - started
    write_json(args.out, report, indent=2)
    return report


def format_breakdown(what, parts) -> str:
    lines = [f"breakdown of our {what}, batch 1 (median seconds):"]
    lines += [f"    {name:<70}{seconds:8.3f}" for name, seconds in parts.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--categories", default=DEFAULT_CATEGORIES,
                        help="COCO panoptic categories JSON (local file; never downloaded)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[DEFAULT_SIZE],
                        metavar="HxW", help="padded input sizes, multiples of 32 (800x1344 "
                        "takes minutes per call on 2 cores)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--instances", type=int, default=8,
                        help="random ground-truth instances per image in the train step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit", choices=("config", "auto", "true", "false"), default="config",
                        help="XLA for our train step (default: the config's train.jit_compile)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the parts of our batch-1 inference")
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON)
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads of TF (intra- and inter-op) and of torch; 0: their "
                             "defaults (every core)")
    parser.add_argument("--torch-omp-wait-policy", default=TORCH_OMP_WAIT_POLICY,
                        help="OMP_WAIT_POLICY of the torch process ('' leaves it unset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--out", default=os.path.join("runs", "benchmark_model.json"))
    args = parser.parse_args(argv)
    if args.torch_worker:
        return torch_worker_main(args.threads)
    if not os.path.isfile(args.categories):
        print(f"error: categories file not found: {args.categories} (the COCO panoptic "
              f"categories JSON; nothing is downloaded)", file=sys.stderr)
        return 2
    sys.path.insert(0, REPO_ROOT)
    report = run(args)
    print()
    print(format_table(report["cases"]))
    print(f"{load_line(report)}; report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
