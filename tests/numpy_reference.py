"""Plain-numpy (loop) references of the detection ops, written from the papers and from
Detectron2's documented semantics, independently of oanet_tf.ops."""

from __future__ import annotations

import math

import numpy as np


def anchors(image_size, stride, size, ratios):
    """Anchors of one level, one location at a time: row-major (y, x), then ratio."""
    out = []
    for y in range(math.ceil(image_size[0] / stride)):
        for x in range(math.ceil(image_size[1] / stride)):
            for ratio in ratios:
                w = math.sqrt(size * size / ratio)
                h = ratio * w
                cy, cx = (y + 0.5) * stride, (x + 0.5) * stride
                out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out)


def encode(box, anchor, weights):
    h, w = box[2] - box[0], box[3] - box[1]
    ha, wa = anchor[2] - anchor[0], anchor[3] - anchor[1]
    cy, cx = box[0] + h / 2, box[1] + w / 2
    cya, cxa = anchor[0] + ha / 2, anchor[1] + wa / 2
    return np.array([weights[0] * (cy - cya) / ha, weights[1] * (cx - cxa) / wa,
                     weights[2] * math.log(h / ha), weights[3] * math.log(w / wa)])


def _area(box):
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a, b):
    """IoU of two boxes; 0 when the union is empty."""
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = _area(a) + _area(b) - ih * iw
    return ih * iw / union if union > 0 else 0.0


def match(quality, gt_valid, low, high, allow_low_quality):
    """Detectron2 Matcher on one image: quality [N, M] -> (matched [N], labels [N])."""
    n = quality.shape[0]
    valid = np.flatnonzero(gt_valid)
    if valid.size == 0:
        return np.zeros(n, np.int64), np.zeros(n, np.int64)
    q = quality[:, valid]
    matched = valid[q.argmax(axis=1)]
    best = q.max(axis=1)
    labels = np.where(best >= high, 1, np.where(best < low, 0, -1))
    if allow_low_quality:
        for j in range(q.shape[1]):
            top = q[:, j].max()
            if top > 0:
                labels[q[:, j] == top] = 1
    return matched, labels


def greedy_nms(boxes, scores, iou_threshold, score_threshold, max_output):
    """Textbook greedy NMS: indices kept in descending score order."""
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold]
    keep = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= iou_threshold for j in keep):
            keep.append(i)
        if len(keep) == max_output:
            break
    return keep


def _bilinear(feature, y, x):
    """Detectron2 ROIAlign's bilinear_interpolate on feature [H, W, C]."""
    height, width = feature.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feature.shape[2])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    return ((1 - ly) * (1 - lx) * feature[y_low, x_low] + (1 - ly) * lx * feature[y_low, x_high]
            + ly * (1 - lx) * feature[y_high, x_low] + ly * lx * feature[y_high, x_high])


def roi_align(feature, box, scale, output_size, sampling_ratio, aligned=True):
    """Detectron2 ROIAlign of one box on feature [H, W, C] -> [S, S, C]."""
    offset = 0.5 if aligned else 0.0
    y1, x1, y2, x2 = (c * scale - offset for c in box)
    h, w = y2 - y1, x2 - x1
    if not aligned:
        h, w = max(h, 1.0), max(w, 1.0)
    bin_h, bin_w = h / output_size, w / output_size
    out = np.zeros((output_size, output_size, feature.shape[2]))
    for py in range(output_size):
        for px in range(output_size):
            total = np.zeros(feature.shape[2])
            for iy in range(sampling_ratio):
                y = y1 + py * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                for ix in range(sampling_ratio):
                    x = x1 + px * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                    total += _bilinear(feature, y, x)
            out[py, px] = total / sampling_ratio ** 2
    return out


def paste_mask(mask, box, image_size):
    """Detectron2's _do_paste_mask (grid_sample, align_corners=False, zero padding) for one
    mask, with pixels whose centre is outside the box set to 0 -> [H, W]."""
    size = mask.shape[0]
    y1, x1, y2, x2 = box
    out = np.zeros(image_size)

    def tap(i, j):
        return mask[i, j] if 0 <= i < size and 0 <= j < size else 0.0

    for py in range(image_size[0]):
        cy = py + 0.5
        if not y1 <= cy <= y2:
            continue
        v = (cy - y1) / (y2 - y1) * size - 0.5
        for px in range(image_size[1]):
            cx = px + 0.5
            if not x1 <= cx <= x2:
                continue
            u = (cx - x1) / (x2 - x1) * size - 0.5
            i0, j0 = math.floor(v), math.floor(u)
            fy, fx = v - i0, u - j0
            out[py, px] = ((1 - fy) * (1 - fx) * tap(i0, j0) + (1 - fy) * fx * tap(i0, j0 + 1)
                           + fy * (1 - fx) * tap(i0 + 1, j0) + fy * fx * tap(i0 + 1, j0 + 1))
    return out
