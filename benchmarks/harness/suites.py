"""The suites benchmark.py composes, each a list of report rows (report.row), every timing
beside its peer on this machine's CPU, interleaved call by call:

  model      R50 (configs/coco_r50.yaml, random weights) against torchvision's
             maskrcnn_resnet50_fpn (100 detections): serve, infer and train on random
             images of each size (the tensors' own size);
  coco       the same pair on COCO's own sizes (harness.coco): the real
             COCO JPEGs end to end, a train step on landscape and portrait batches;
  breakdown  the stages of R50's batch-1 inference at each size and of its train step on a
             COCO-sized batch of 2, timed alone, with their multiply-adds and their rate
             against the ResNet trunk's, in each precision (backbone + FPN beside
             torchvision's);
  memory     peak resident memory of R50's train step and torchvision's, each in a fresh
             process, at each size and batch and on the coco suite's COCO-sized batches;
  synthetic  the demo's small config (configs/synthetic.yaml), ours alone;
  precision  the same config in bfloat16 against float32 (both ours, call by call):
             end-to-end serving and the train step;
  input      the input pipeline from COCO files and from TFRecords, against the train step
             it feeds (target: INPUT_TARGET times its images per second), and the decode
             step alone from each source;
  evaluator  our PQ from files against hotcoco's and panopticapi's pq_compute, on a small
             and a COCO-sized synthetic set;
  ops        the ops the model picks without XLA against their XLA-compilable variants:
             RoIAlign, proposal NMS, and the SRM on the cells its loss or Eq. 3 reads;
             and the merge with the stuff area rule per connected region against per class.
"""

from __future__ import annotations

import os

from harness import breakdown, coco, evaluator, input_pipeline, memory
from harness.inputs import SYNTHETIC_CONFIG, owner_labels, random_instances
from harness.model_bench import MODES, OursBench, resized_and_padded, time_against_peer
from harness.report import format_rows, row
from harness.timing import alternating, median
from oanet_tf.config import FPNConfig, RoIHeadsConfig, RPNConfig, SRMConfig
from oanet_tf.inference.trained_model import INFERENCE_POLICIES

SUITES = ("model", "coco", "breakdown", "memory", "synthetic", "precision", "input",
          "evaluator", "ops")
PEER_SUITES = ("model", "coco", "breakdown")  # the suites that time torchvision in-process
R50_SUITES = PEER_SUITES + ("memory",)  # the suites that build R50 (COCO's categories)
PRECISIONS = tuple(INFERENCE_POLICIES)  # float32, bfloat16
INPUT_CASES = ("synthetic_128", "synthetic_640x480")  # the synthetic and the R50 settings
COCO_SAMPLE_CASE = "coco_sample"  # R50's settings on the real COCO sample, when present
INPUT_TARGET = 3.0  # the pipeline must deliver 3x the train step's images per second
INSTANCES = 8  # random ground-truth instances per training image
# The ops suite's inputs: as many boxes as the R50 config's proposals and detections.
OPS_PROPOSAL_CANDIDATES, OPS_PROPOSALS = 4000, 1000
# The ops run with the model's default settings.
OPS_NMS_THRESHOLD = RPNConfig.nms_threshold
OPS_CHANNELS = FPNConfig.channels
OPS_ROI_RESOLUTION = RoIHeadsConfig.box_pooler_resolution
OPS_SAMPLING_RATIO = RoIHeadsConfig.pooler_sampling_ratio
OPS_SRM_THINGS = 80  # COCO's thing categories, the SRM's channels
OPS_SRM_KERNEL, OPS_SRM_KERNEL_SIZE = SRMConfig.kernel, SRMConfig.kernel_size
OPS_SRM_STRIDE = SRMConfig.stride
OPS_DETECTIONS = 100  # the R50 config's detections per image
OPS_SRM_CATEGORIES = 10  # categories among those detections in the SRM score-map row
# The merge row: COCO's stuff classes, a smooth random stuff map (argmax of noise drawn on a
# grid this many times coarser, upsampled), and random instance boxes drawn over it.
OPS_STUFF_CLASSES, OPS_STUFF_NOISE_STRIDE, OPS_MERGE_INSTANCES = 53, 32, 20


def model_rows(bench: OursBench, batches, peer, args, suite="model", modes=MODES) -> list:
    """serve / infer latency and train images per second of each of `modes`, beside the peer
    (a TorchClient, or None). args: seed, warmup, repeats."""
    rows = []
    size = bench.size
    for mode in modes:
        for batch in batches:
            ours, theirs = time_against_peer(bench, peer, mode, batch, args.seed, INSTANCES,
                                             args.warmup, args.repeats)
            ours_s, theirs_s = median(ours), (median(theirs) if theirs else None)
            speedup = theirs_s / ours_s if theirs_s else None
            peer_name = "torchvision" if theirs_s else ""
            if mode == "train":
                rows.append(row(suite, "train step", size, batch, "images/s", batch / ours_s,
                                batch / theirs_s if theirs_s else None, peer_name, speedup))
            else:
                case = "end-to-end (JPEG in)" if mode == "serve" else "model alone"
                rows.append(row(suite, case, size, batch, "s/batch", ours_s, theirs_s,
                                peer_name, speedup))
            print(format_rows(rows[-1:], header=False), flush=True)
    return rows


def model_suite(args, peer) -> list:
    """R50 at each of args.sizes and args.batches, in args.modes (args.config,
    args.categories, args.overrides; args.jit: XLA for our train step)."""
    import keras

    rows = []
    for size in args.sizes:
        bench = OursBench(args.config, args.categories, size, args.overrides, args.jit)
        rows += model_rows(bench, args.batches, peer, args, modes=args.modes)
        del bench
        keras.backend.clear_session()
    return rows


def coco_suite(args, peer) -> list:
    """R50 on the real COCO JPEGs of args.coco_sample and on COCO-sized train batches, ours
    in each of args.precision (one model each, built in turn)."""
    rows = []
    for precision in args.precision:
        bench = OursBench(args.config, args.categories, None, args.overrides, args.jit,
                          precision)
        rows += coco.coco_rows(bench, peer, coco.sample_images(args.coco_sample), args,
                               INSTANCES, args.peer_precisions)
    return rows


def breakdown_suite(args, peer) -> list:
    """At each of args.sizes, the stages of R50's batch-1 inference, then of its train step
    on the coco suite's landscape batch, each timed alone with its multiply-adds and its
    rate against the trunk's, in each of args.precision (one model each); args.modes picks
    which (infer, train). Our backbone + FPN beside the peer's (a TorchClient or None)."""
    import keras

    rows = []
    for size in args.sizes:
        for precision in args.precision:
            bench = OursBench(args.config, args.categories, size, args.overrides, args.jit,
                              precision)
            measured = []
            if "infer" in args.modes:
                calls, macs, counts = breakdown.inference_stages(bench, args.seed)
                table = breakdown.stage_table(
                    breakdown.timed_stages(calls, args.warmup, args.repeats), macs)
                notes = {"box_head": f"{counts['proposals']} proposals",
                         "mask_head": f"{counts['detection_slots']} slots, "
                                      f"{counts['detections']} detections"}
                measured += breakdown.breakdown_rows("infer", size, 1, precision, table, notes)
                if peer is not None:
                    measured.append(breakdown.peer_row(bench, peer, args.seed, args.warmup,
                                                       args.repeats))
            if "train" in args.modes:
                case = coco.train_cases(bench.config.data, batch=breakdown.TRAIN_BATCH)[0]
                calls, macs, counts = breakdown.train_stages(bench, args.seed, INSTANCES,
                                                             case.resized, case.padded)
                table = breakdown.stage_table(
                    breakdown.timed_stages(calls, args.warmup, args.repeats), macs)
                notes = {"box_head": f"{counts['rois']} RoIs",
                         "mask_head": f"{counts['mask_rois']} RoIs"}
                measured += breakdown.breakdown_rows("train", case.padded, breakdown.TRAIN_BATCH,
                                                     precision, table, notes)
            print(format_rows(measured, header=False), flush=True)
            rows += measured
            del bench
            keras.backend.clear_session()
    return rows


def memory_suite(args) -> list:
    """Peak resident memory of R50 against torchvision's (args.torch_python; none with
    args.no_torch), each in a fresh process. With "train" in args.modes: the train step on one
    random batch per args.sizes and args.batches, then the coco suite's COCO-sized batches in
    one process; with "serve": serving the first COCO sample JPEG alone and all of them
    together, in each of args.precision."""
    torch_python = None if args.no_torch else args.torch_python
    rows = []
    if "train" in args.modes:
        cases = [("train step", memory.batches_of_size(size, batch))
                 for size in args.sizes for batch in args.batches]
        cases.append(("train steps (COCO sizes)", memory.coco_batches(args.config)))
        for name, batches in cases:
            rows.append(memory.memory_row(name, args.config, args.categories, INSTANCES,
                                          batches, torch_python))
            print(format_rows(rows[-1:], header=False), flush=True)
    if "serve" in args.modes:
        files = coco.sample_images(args.coco_sample)
        for precision in args.precision:
            for batch_files in (files[:1], files):
                rows.append(memory.serving_row(args.config, args.categories, batch_files,
                                               precision, torch_python))
                print(format_rows(rows[-1:], header=False), flush=True)
    return rows


def synthetic_suite(args, work_dir) -> list:
    """The demo config: its own categories (from a generated synthetic split)."""
    from oanet_tf.config import load_config
    from oanet_tf.data.synthetic import make_synthetic_dataset

    config = load_config(SYNTHETIC_CONFIG)
    root = os.path.join(work_dir, "synthetic_model")
    make_synthetic_dataset(root, 0, 2, 0, tuple(config.data.synthetic_size), progress=False)
    _, size = resized_and_padded(config.data, tuple(config.data.synthetic_size))
    bench = OursBench(SYNTHETIC_CONFIG, os.path.join(root, "val", "panoptic.json"), size)
    return model_rows(bench, sorted({1, config.train.batch_size}), None, args,
                      suite="synthetic")


def precision_suite(args, work_dir) -> list:
    """The demo config built in bfloat16 and in float32 (the same random weights), serve
    and train alternating call by call; speed-up = float32's time / bfloat16's."""
    import keras

    from oanet_tf.config import load_config
    from oanet_tf.data.synthetic import make_synthetic_dataset

    config = load_config(SYNTHETIC_CONFIG)
    root = os.path.join(work_dir, "precision_model")
    make_synthetic_dataset(root, 0, 2, 0, tuple(config.data.synthetic_size), progress=False)
    _, size = resized_and_padded(config.data, tuple(config.data.synthetic_size))
    categories = os.path.join(root, "val", "panoptic.json")
    benches = {precision: OursBench(SYNTHETIC_CONFIG, categories, size, precision=precision)
               for precision in PRECISIONS}
    rows = []
    for mode in ("serve", "train"):
        batch = config.train.batch_size
        for bench in benches.values():
            bench.prepare(mode, batch, args.seed, INSTANCES)
        seconds = alternating({p: b.call for p, b in benches.items()}, (), args.warmup,
                              args.repeats)
        fast, slow = median(seconds["bfloat16"]), median(seconds["float32"])
        if mode == "train":
            rows.append(row("precision", "train step, bfloat16", size, batch, "images/s",
                            batch / fast, batch / slow, "ours float32", slow / fast))
        else:
            rows.append(row("precision", "end-to-end (JPEG in), bfloat16", size, batch,
                            "s/batch", fast, slow, "ours float32", slow / fast))
        print(format_rows(rows[-1:], header=False), flush=True)
    del benches
    keras.backend.clear_session()
    return rows


def input_cases(coco_sample: str) -> tuple:
    """INPUT_CASES, then COCO_SAMPLE_CASE when coco_sample holds a panoptic.json (said when
    it does not)."""
    if os.path.isfile(os.path.join(coco_sample, "panoptic.json")):
        return INPUT_CASES + (COCO_SAMPLE_CASE,)
    print(f"input: {COCO_SAMPLE_CASE} left out, no panoptic.json in {coco_sample} "
          f"(--coco-sample)", flush=True)
    return INPUT_CASES


def input_suite(args, work_dir, train_rows) -> list:
    """Pipeline images per second from files and TFRecords, against the train step of the
    same settings (the synthetic config's, or R50's: on COCO-sized batches when the coco
    suite ran, else at the largest size measured); then the decode step alone, TFRecords
    against files."""
    options = input_pipeline.InputOptions(threads=args.threads or os.cpu_count() or 2,
                                          repeats=args.repeats, coco_sample=args.coco_sample)
    rows = []
    for case in input_cases(args.coco_sample):
        result = input_pipeline.run_case(case, work_dir, options)
        # R50's step on COCO-sized batches (640x480 files, as this case reads) when measured.
        for suite in (("synthetic",) if case == "synthetic_128" else ("coco", "model")):
            steps = [r for r in train_rows
                     if r["suite"] == suite and r["case"].startswith("train step")]
            if steps:
                break
        step = max(steps, key=lambda r: (r["size"][0] * r["size"][1], r["ours"]),
                   default=None)
        size, batch = result["padded_size"], result["batch_size"]
        for source in ("files", "tfrecords"):
            rate = result[f"{source}_images_per_second"]
            rows.append(row("input", f"{case} from {source}", size, batch, "images/s", rate,
                            step["ours"] if step else None,
                            f"train step ({suite}, {step['size'][0]}x{step['size'][1]}, "
                            f"batch {step['batch']})" if step else "",
                            rate / step["ours"] if step else None,
                            note=f"target >= {INPUT_TARGET:g}x the train step"))
        rows.append(row("input", f"{case} decode alone", size, batch, "images/s",
                        result["tfrecords_decode_images_per_second"],
                        result["files_decode_images_per_second"], "decode from files",
                        result["decode_speedup"],
                        note=f"ours: from TFRecords ({result['tfrecords_mb']:.1f} MB, written "
                             f"in {result['convert_seconds']:.1f} s; the files "
                             f"{result['coco_files_mb']:.1f} MB)"))
        print(format_rows(rows[-3:], header=False), flush=True)
    return rows


def evaluator_suite(args, work_dir) -> list:
    """Per set of evaluator.SETS: our evaluate_files (its default engine) against each peer,
    in images per second."""
    rows = []
    for num_images, size in evaluator.SETS:
        report = evaluator.compare_with_pq_compute(
            os.path.join(work_dir, f"pq_{size[0]}x{size[1]}"), num_images, size, args.seed,
            os.cpu_count() or 1, args.repeats)
        seconds = report["seconds"]
        ours = num_images / seconds.pop("oanet_tf evaluate_files")
        for peer_name, peer_seconds in seconds.items():
            difference = report["max_abs_difference"].get(peer_name)
            rows.append(row("evaluator", f"PQ from files, {num_images} images ({report['engine']})",
                            size, None, "images/s", ours, num_images / peer_seconds, peer_name,
                            ours * peer_seconds / num_images,
                            note="" if difference is None else
                            f"its max |difference| to pq_compute {difference:.1e}"))
            print(format_rows(rows[-1:], header=False), flush=True)
    return rows


def ops_suite(args) -> list:
    """The fast ops against the XLA-compilable ones, same inputs, alternating calls, at each
    of args.sizes."""
    import numpy as np
    import tensorflow as tf

    from harness import roi_align
    from oanet_tf.ops import nms

    rows = []
    rng = np.random.default_rng(args.seed)
    for size in args.sizes:
        case = roi_align.make_case(args.seed, size, 1, OPS_CHANNELS, OPS_PROPOSALS,
                                   tf.float32)
        levels = "/".join(str(n) for n in roi_align.boxes_per_level(case[1]).values())
        xla = roi_align.compiles_under_xla("crop_and_resize", case, OPS_ROI_RESOLUTION,
                                           OPS_SAMPLING_RATIO)
        for mode in roi_align.MODES:
            functions = {method: roi_align.make_function(method, mode, OPS_ROI_RESOLUTION,
                                                         OPS_SAMPLING_RATIO)
                         for method in ("crop_and_resize", "gather")}
            difference, scale = roi_align.max_difference(
                *(function(*case) for function in functions.values()))
            seconds = alternating(functions, case, args.warmup, args.repeats)
            rows.append(_ops_row(f"RoIAlign {OPS_ROI_RESOLUTION}x{OPS_ROI_RESOLUTION} {mode}",
                                 size, seconds, "crop_and_resize", "gather",
                                 "gather (XLA-compilable)",
                                 note=f"max |difference| {difference:.1e} of values up to "
                                      f"{scale:.1f}; boxes P2-P5 {levels}; crop_and_resize "
                                      f"under XLA {xla}"))
        scale = np.array(size * 2, np.float32)
        corners = np.sort(rng.uniform(0, 1, (1, OPS_PROPOSAL_CANDIDATES, 2, 2)), axis=2)
        candidates = tf.constant(corners.transpose(0, 1, 3, 2).reshape(1, -1, 4) * scale,
                                 tf.float32)
        scores = tf.constant(rng.uniform(size=(1, OPS_PROPOSAL_CANDIDATES)), tf.float32)
        functions = {xla: tf.function(lambda b, s, xla=xla: nms.batched_nms(
            b, s, OPS_PROPOSALS, OPS_NMS_THRESHOLD, xla=xla)[3]) for xla in (False, True)}
        seconds = alternating(functions, (candidates, scores), args.warmup, args.repeats)
        rows.append(_ops_row(f"proposal NMS {OPS_PROPOSAL_CANDIDATES}->{OPS_PROPOSALS}", size,
                             seconds, False, True, "padded (XLA-compilable)"))
        rows.extend(_srm_rows(args, size))
        rows.append(_stuff_area_row(args, size))
    print(format_rows(rows, header=False), flush=True)
    return rows


def _srm_rows(args, size) -> list:
    """The SRM as the model runs it without XLA (cells read only) against every pixel: the
    loss forward+backward on INSTANCES random ground-truth boxes, and Eq. 3's score map on
    OPS_DETECTIONS random filled boxes of OPS_SRM_CATEGORIES categories (far more pixels
    covered than the random-weight detections of the model rows)."""
    import numpy as np
    import tensorflow as tf

    from oanet_tf.modeling import spatial_ranking, srm_layer as srm_lib

    components = {static: spatial_ranking.SpatialRanking(
        num_things=OPS_SRM_THINGS, kernel=OPS_SRM_KERNEL, kernel_size=OPS_SRM_KERNEL_SIZE,
        stride=OPS_SRM_STRIDE, static_shapes=static, loss_weight=1.0) for static in (True, False)}
    for component in components.values():
        component.build((None, *size, OPS_SRM_THINGS))
    components[False].set_weights(components[True].get_weights())
    layer = components[True].module
    _, classes, masks = random_instances(args.seed, 1, *size, INSTANCES, OPS_SRM_THINGS)
    owner = tf.constant(owner_labels(classes, masks))
    _, count = srm_lib.srm_inputs(masks, classes, OPS_SRM_THINGS)

    def loss_gradients(sparse):
        component = components[not sparse]
        with tf.GradientTape() as tape:
            loss = component.loss(masks, classes, owner)
        return tape.gradient(loss, component.trainable_variables)

    functions = {sparse: tf.function(lambda sparse=sparse: loss_gradients(sparse))
                 for sparse in (True, False)}
    seconds = alternating(functions, (), args.warmup, args.repeats)
    conflicting = float(np.mean(count.numpy() >= spatial_ranking.MIN_CONFLICT_COUNT))
    rows = [_ops_row(f"SRM loss fwd+bwd, {INSTANCES} instances", size, seconds, True, False,
                     "every pixel (XLA-compilable)",
                     note=f"{conflicting:.1%} of pixels conflicting")]
    _, classes, masks = random_instances(args.seed + 1, 1, *size, OPS_DETECTIONS,
                                         OPS_SRM_CATEGORIES)
    channels, _ = srm_lib.srm_inputs(masks, classes, OPS_SRM_THINGS)
    functions = {True: tf.function(layer.covered_score_map),
                 False: tf.function(lambda c: tf.nn.softmax(layer(c)))}
    seconds = alternating(functions, (channels,), args.warmup, args.repeats)
    covered = float(np.mean(masks.any(axis=1)))
    rows.append(_ops_row(f"SRM score map, {OPS_DETECTIONS} boxes", size, seconds, True,
                         False, "every pixel (XLA-compilable)",
                         note=f"{covered:.1%} of pixels covered, "
                              f"{OPS_SRM_CATEGORIES} categories"))
    return rows


def _stuff_area_row(args, size):
    """The whole panoptic merge with eval.stuff_area_rule per_region (connected components in
    the graph) against per_class, on one image of `size`."""
    import numpy as np
    import tensorflow as tf

    from oanet_tf.config import PER_CLASS, PER_REGION, EvalConfig
    from oanet_tf.inference.panoptic_merge import panoptic_merge
    from oanet_tf.ops.connected_components import connected_components

    rng = np.random.default_rng(args.seed)
    coarse = [-(-side // OPS_STUFF_NOISE_STRIDE) for side in size]
    noise = rng.normal(size=(1, *coarse, OPS_STUFF_CLASSES)).astype(np.float32)
    stuff = tf.nn.softmax(tf.image.resize(noise, size, method="bilinear"))
    _, classes, masks = random_instances(args.seed, 1, *size, OPS_MERGE_INSTANCES, 2)
    masks, scores = tf.constant(masks, tf.float32), tf.ones([1, OPS_MERGE_INSTANCES])
    functions = {rule: tf.function(lambda rule=rule: panoptic_merge(
        masks, classes, scores, scores, stuff, 2,
        min_stuff_area=EvalConfig.min_stuff_area, stuff_area_rule=rule)["panoptic"])
        for rule in (PER_REGION, PER_CLASS)}
    seconds = alternating(functions, (), args.warmup, args.repeats)
    label = tf.argmax(stuff, axis=-1)
    regions = len(np.unique(connected_components(label, tf.ones_like(label, tf.bool))))
    return _ops_row("merge, stuff area per region", size, seconds, PER_REGION, PER_CLASS,
                    "per class", note=f"{regions} stuff regions, {OPS_STUFF_CLASSES} "
                                      f"classes, {OPS_MERGE_INSTANCES} instances")


def _ops_row(case, size, seconds, ours_key, peer_key, peer_name, note=""):
    """A row of the ops suite from alternating's {variant: [seconds]}."""
    ours, peer = median(seconds[ours_key]), median(seconds[peer_key])
    return row("ops", case, size, 1, "s/call", ours, peer, peer_name, peer / ours, note)
