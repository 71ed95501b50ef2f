"""A synthetic COCO panoptic dataset with the occlusions OANet exists for.

Each image is a scene of textured stuff regions (sky, grass, wall, floor) behind 3-8 things.
Persons are frequent and large and often wear a tie that lies inside their silhouette (the
paper's person-and-tie case). Balls, bottles and suitcases overlap each other and persons;
the front one follows a fixed class depth order (`FRONT_TO_BACK`) most of the time, so a
network that sees only per-class instance masks can learn who is on top.

The files are real COCO: JPEG images; a panoptic PNG + JSON that give each pixel to its
visible owner; an instances JSON whose RLE masks are whole (a person's mask includes its tie,
as in COCO). Layout of `out_dir`, per split (train, val):
    images/{image_id:012d}.jpg, panoptic/{image_id:012d}.png, panoptic.json, instances.json
Everything is a function of the seed: the same seed writes byte-identical files, and an image
depends only on (seed, split, index), not on how many images the other split has.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from oanet_tf.data.panoptic_format import ID_BASE, VOID_ID, id_to_rgb, measured_segment
from oanet_tf.errors import DatasetError
from oanet_tf.fileio import atomic_open, write_json

# Categories keep their COCO ids, names and colours (ids are not contiguous, as in COCO).
PERSON, TIE, SUITCASE, BALL, BOTTLE = 1, 32, 33, 37, 44
SKY, FLOOR, GRASS, WALL = 187, 190, 193, 199
CATEGORIES = (
    {"id": PERSON, "name": "person", "isthing": 1, "color": [220, 20, 60],
     "supercategory": "person"},
    {"id": TIE, "name": "tie", "isthing": 1, "color": [188, 208, 182],
     "supercategory": "accessory"},
    {"id": SUITCASE, "name": "suitcase", "isthing": 1, "color": [0, 220, 176],
     "supercategory": "accessory"},
    {"id": BALL, "name": "sports ball", "isthing": 1, "color": [78, 180, 255],
     "supercategory": "sports"},
    {"id": BOTTLE, "name": "bottle", "isthing": 1, "color": [197, 226, 255],
     "supercategory": "kitchen"},
    {"id": SKY, "name": "sky-other-merged", "isthing": 0, "color": [70, 130, 180],
     "supercategory": "sky"},
    {"id": FLOOR, "name": "floor-other-merged", "isthing": 0, "color": [96, 36, 108],
     "supercategory": "floor"},
    {"id": GRASS, "name": "grass-merged", "isthing": 0, "color": [152, 251, 152],
     "supercategory": "plant"},
    {"id": WALL, "name": "wall-other-merged", "isthing": 0, "color": [102, 102, 156],
     "supercategory": "wall"},
)

SPLITS = ("train", "val")
SPLIT_ID_OFFSET = 1_000_000  # image id = offset * split index + image index + 1
MIN_SIDE = 32  # smallest image side the scene layout is designed for
REFERENCE_SIDE = 128.0  # texture periods and line widths are given for this image side

# Scene statistics.
THINGS_PER_IMAGE = (3, 8)  # inclusive range, ties counted, before tiny things are dropped
PERSON_COUNT_PROBABILITIES = (0.1, 0.35, 0.35, 0.2)  # of 0, 1, 2, 3 persons
TIE_PROBABILITY = 0.55  # a person wears a tie
OTHER_THINGS = (BALL, BOTTLE, SUITCASE)
OTHER_THING_PROBABILITIES = (0.35, 0.35, 0.3)
ANCHOR_PROBABILITY = 0.65  # a ball / bottle / suitcase is placed to overlap an earlier thing
PERSON_ANCHOR_PROBABILITY = 0.3  # a second or third person overlaps an earlier person
FRONT_TO_BACK = (BALL, BOTTLE, SUITCASE, TIE, PERSON)  # class depth order, front first
DEPTH_ORDER_PROBABILITY = 0.85  # an anchored pair follows FRONT_TO_BACK; else it is reversed
WITHIN_CLASS_DEPTH_JITTER = 0.5  # < 1: random order within a class, never across classes
REVERSED_DEPTH_OFFSET = 0.25  # a reversed thing lies just behind / in front of its anchor
CROWD_PROBABILITY = 0.1  # an image has one crowd segment (a pile of balls or bottles)
CROWD_MEMBERS = (6, 12)  # inclusive range of objects in a crowd
MIN_VISIBLE_AREA = 20  # things (and crowds) with fewer visible pixels are dropped

# Sizes as fractions of the shorter image side.
PERSON_HEIGHT = (0.4, 0.75)
PERSON_HALF_WIDTH = 0.27  # of the person's height (arms included)
BALL_RADIUS = (0.06, 0.12)
SUITCASE_HEIGHT, SUITCASE_WIDTH = (0.14, 0.25), (0.18, 0.32)
BOTTLE_WIDTH = (0.06, 0.09)
BOTTLE_HALF_HEIGHT = 2.2  # of the bottle's width
CROWD_RADIUS, CROWD_MEMBER_RADIUS = 0.12, (0.03, 0.05)

# Stuff layout and void.
HORIZON = (0.3, 0.6)  # fraction of the height
HORIZON_WAVE = 0.05  # amplitude, fraction of the height
SPLIT_TOP_PROBABILITY = 0.4  # sky and wall side by side above the horizon
SPLIT_BOTTOM_PROBABILITY = 0.25  # grass and floor side by side below it
BOUNDARY_VOID_PROBABILITY = 0.7  # stuff boundaries are unlabeled, as often in COCO
POLE_PROBABILITY = 0.3  # a thin unlabeled pole

# Appearance. Texture periods are in pixels at REFERENCE_SIDE.
SKY_ZENITH, SKY_HORIZON = (70, 130, 210), (185, 215, 245)
GRASS_COLOR, GRASS_NOISE, GRASS_STREAKS = (60, 140, 50), 18.0, 12.0
GRASS_NOISE_CHANNELS = (0.5, 1.0, 0.4)  # grass varies mostly in green
GRASS_STREAK_PERIOD = 5.0
BRICK_COLOR, MORTAR_COLOR, BRICK_HEIGHT = (195, 170, 140), (125, 115, 105), 8.0
FLOOR_TILES, FLOOR_TILE = ((150, 110, 70), (105, 72, 45)), 12.0
SKIN = ((241, 194, 150), (224, 172, 105), (198, 134, 66), (141, 85, 36))
SHIRTS = ((70, 110, 190), (200, 70, 60), (230, 230, 225), (90, 150, 90), (150, 150, 150))
TROUSERS = ((45, 45, 70), (50, 70, 120), (80, 65, 50))
TIE_STRIPES = (((240, 200, 40), (30, 30, 110)), ((200, 30, 120), (20, 20, 20)))
SUITCASE_COLORS = ((125, 75, 40), (160, 120, 70), (60, 55, 50))
GLASS = ((30, 130, 70), (110, 60, 20), (90, 150, 200))
BALL_ORANGE, BALL_SEAM = (235, 120, 30), (60, 30, 10)
BOTTLE_LABEL, BOTTLE_CAPS = (235, 225, 200), ((190, 30, 30), (210, 170, 40))
POLE_COLOR = (70, 70, 75)
COLOR_JITTER = 0.15  # per object, multiplicative
BRIGHTNESS_JITTER = 0.1  # per image, multiplicative
PIXEL_NOISE = 3.0  # standard deviation, grey levels
JPEG_QUALITY = 90


@dataclasses.dataclass
class _Thing:
    """One object of a scene, painted inside its window of the image."""

    category_id: int
    box: tuple  # window (y0, x0, y1, x1) in the image, clipped
    mask: np.ndarray  # [y1 - y0, x1 - x0] bool: the whole object
    rgb: np.ndarray  # [y1 - y0, x1 - x0, 3] float32 appearance
    depth: float  # larger lies further back
    layer: int = 0  # drawn after things of the same depth (a tie on its person)
    iscrowd: int = 0
    segment_id: int = 0

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def width(self) -> int:
        return self.box[3] - self.box[1]

    def center(self) -> tuple:
        return (self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0

    def full_mask(self, shape) -> np.ndarray:
        """[H, W] bool mask in the whole image."""
        out = np.zeros(shape, bool)
        y0, x0, y1, x1 = self.box
        out[y0:y1, x0:x1] = self.mask
        return out


# ------------------------------------------------------------------------------ shapes

def _window(cy, cx, half_h, half_w, shape):
    """Pixel window (y0, x0, y1, x1) around a centre inside the image, clipped to it."""
    y0, y1 = max(0, int(np.floor(cy - half_h))), min(shape[0], int(np.ceil(cy + half_h)))
    x0, x1 = max(0, int(np.floor(cx - half_w))), min(shape[1], int(np.ceil(cx + half_w)))
    return y0, x0, y1, x1


def _grid(box):
    """Pixel-centre coordinates of a window: yy [h, 1], xx [1, w] (broadcast together)."""
    y0, x0, y1, x1 = box
    yy = (np.arange(y0, y1, dtype=np.float32) + 0.5)[:, None]
    xx = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, :]
    return yy, xx


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _rect(yy, xx, top, left, bottom, right):
    return (yy >= top) & (yy < bottom) & (xx >= left) & (xx < right)


def _rounded_rect(yy, xx, top, left, bottom, right, radius):
    """Rectangle with quarter-circle corners of `radius`."""
    radius = min(radius, (bottom - top) / 2, (right - left) / 2)
    dy = np.maximum(np.maximum(top + radius - yy, yy - (bottom - radius)), 0)
    dx = np.maximum(np.maximum(left + radius - xx, xx - (right - radius)), 0)
    return _rect(yy, xx, top, left, bottom, right) & (dy ** 2 + dx ** 2 <= radius ** 2)


def _paint(shape, color):
    """[h, w, 3] float32 filled with one colour."""
    return np.broadcast_to(np.asarray(color, np.float32), shape + (3,)).copy()


def _jittered(rng, color):
    return np.clip(np.asarray(color, np.float32) * rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER),
                   0, 255)


def _pick(rng, palette):
    return palette[int(rng.integers(len(palette)))]


# ------------------------------------------------------------------------------ things

def _person(rng, cy, cx, height, shape):
    """A standing person (head, torso, arms, legs) and, in the same window, the tie geometry."""
    h, top = height, cy - height / 2
    box = _window(cy, cx, h / 2, PERSON_HALF_WIDTH * h, shape)
    yy, xx = _grid(box)
    head = _ellipse(yy, xx, top + 0.11 * h, cx, 0.11 * h, 0.095 * h)
    torso = _rounded_rect(yy, xx, top + 0.2 * h, cx - 0.19 * h, top + 0.62 * h, cx + 0.19 * h,
                          0.07 * h)
    arms = (_rounded_rect(yy, xx, top + 0.22 * h, cx - 0.26 * h, top + 0.58 * h, cx - 0.17 * h,
                          0.035 * h)
            | _rounded_rect(yy, xx, top + 0.22 * h, cx + 0.17 * h, top + 0.58 * h,
                            cx + 0.26 * h, 0.035 * h))
    legs = (_rect(yy, xx, top + 0.6 * h, cx - 0.16 * h, top + h, cx - 0.015 * h)
            | _rect(yy, xx, top + 0.6 * h, cx + 0.015 * h, top + h, cx + 0.16 * h))
    size = (box[2] - box[0], box[3] - box[1])
    rgb = _paint(size, _jittered(rng, _pick(rng, TROUSERS)))
    shirt = _jittered(rng, _pick(rng, SHIRTS))
    rgb[np.broadcast_to(arms, size)] = shirt * 0.85
    rgb[np.broadcast_to(torso, size)] = shirt
    rgb[np.broadcast_to(head, size)] = _jittered(rng, _pick(rng, SKIN))
    rgb *= (1 - 0.15 * np.abs(xx - cx) / (PERSON_HALF_WIDTH * h))[..., None]  # round body
    mask = np.broadcast_to(head | torso | arms | legs, size)
    return box, mask.copy(), rgb, (top, cx + rng.uniform(-0.03, 0.03) * h, h)


def _tie(rng, person_box, person_mask, geometry):
    """A striped tie on a person's chest, in the person's window, inside its silhouette."""
    top, cx, h = geometry
    yy, xx = _grid(person_box)
    knot_top, blade_top, widest, tip = (top + f * h for f in (0.21, 0.265, 0.5, 0.57))
    knot = _rect(yy, xx, knot_top, cx - 0.035 * h, blade_top, cx + 0.035 * h)
    widening = 0.025 * h + 0.035 * h * (yy - blade_top) / (widest - blade_top)
    narrowing = 0.06 * h * (tip - yy) / (tip - widest)
    half_width = np.where(yy < widest, widening, narrowing)
    blade = (yy >= blade_top) & (yy < tip) & (np.abs(xx - cx) < half_width)
    mask = (knot | blade) & person_mask
    period = max(3.0, 0.08 * h)
    stripes = (np.floor((yy + xx) / period) % 2).astype(bool)
    first, second = (_jittered(rng, c) for c in _pick(rng, TIE_STRIPES))
    rgb = np.where(stripes[..., None], first, second).astype(np.float32)
    return mask, rgb


def _ball_paint(yy, xx, cy, cx, r, rng):
    """Mask and colours of a basketball-like ball in a window grid."""
    mask = _ellipse(yy, xx, cy, cx, r, r)
    seam = max(0.5, 0.06 * r)
    seams = ((np.abs(xx - cx) < seam) | (np.abs(yy - cy) < seam)
             | (np.abs(np.hypot(yy - cy, xx - cx - 1.4 * r) - r) < seam))
    shade = 1 - 0.35 * np.clip(((yy - cy + 0.3 * r) ** 2 + (xx - cx + 0.3 * r) ** 2) / r ** 2,
                               0, 1)
    rgb = np.where(seams[..., None], np.float32(BALL_SEAM), _jittered(rng, BALL_ORANGE))
    return mask, (rgb * shade[..., None]).astype(np.float32)


def _ball(rng, cy, cx, radius, shape):
    box = _window(cy, cx, radius, radius, shape)
    yy, xx = _grid(box)
    mask, rgb = _ball_paint(yy, xx, cy, cx, radius, rng)
    return box, mask, rgb


def _suitcase(rng, cy, cx, height, width, shape):
    """A suitcase: bordered body with straps and an arched handle on top."""
    handle_h = 0.16 * height
    box = _window(cy, cx, height / 2, width / 2, shape)
    yy, xx = _grid(box)
    top, bottom = cy - height / 2 + handle_h, cy + height / 2
    left, right = cx - width / 2, cx + width / 2
    body = _rounded_rect(yy, xx, top, left, bottom, right, 0.08 * min(height, width))
    handle = (_rect(yy, xx, top - handle_h, cx - 0.18 * width, top, cx + 0.18 * width)
              & ~_rect(yy, xx, top - 0.6 * handle_h, cx - 0.11 * width, top, cx + 0.11 * width))
    size = (box[2] - box[0], box[3] - box[1])
    base = _jittered(rng, _pick(rng, SUITCASE_COLORS))
    rgb = _paint(size, base)
    border = max(1.0, 0.08 * min(height, width))
    inner = _rect(yy, xx, top + border, left + border, bottom - border, right - border)
    straps = (np.abs(xx - (cx - 0.25 * width)) < border / 2) | (np.abs(xx - (cx + 0.25 * width))
                                                                 < border / 2)
    rgb[np.broadcast_to(~inner, size)] = base * 0.6
    rgb[np.broadcast_to(inner & straps, size)] = np.minimum(base * 1.5, 255)
    rgb[np.broadcast_to(handle, size)] = base * 0.45
    return box, np.broadcast_to(body | handle, size).copy(), rgb


def _bottle(rng, cy, cx, width, shape):
    """A glass bottle: body, shoulder, neck and cap, with a label band and a highlight."""
    w, bottom = width, cy + BOTTLE_HALF_HEIGHT * width
    box = _window(cy, cx, BOTTLE_HALF_HEIGHT * w, w / 2, shape)
    yy, xx = _grid(box)
    shoulder_y = bottom - 2.8 * w
    body = (_rounded_rect(yy, xx, shoulder_y, cx - w / 2, bottom, cx + w / 2, 0.25 * w)
            | _ellipse(yy, xx, shoulder_y, cx, 0.5 * w, 0.5 * w))
    neck = _rect(yy, xx, bottom - 4.0 * w, cx - 0.2 * w, shoulder_y, cx + 0.2 * w)
    cap = _rect(yy, xx, bottom - 4.4 * w, cx - 0.24 * w, bottom - 4.0 * w, cx + 0.24 * w)
    size = (box[2] - box[0], box[3] - box[1])
    glass = _jittered(rng, _pick(rng, GLASS))
    rgb = _paint(size, glass)
    highlight = np.abs(xx - (cx - 0.25 * w)) < max(0.5, 0.07 * w)
    label = (yy >= bottom - 2.0 * w) & (yy < bottom - 1.1 * w)
    rgb[np.broadcast_to(highlight, size)] = np.minimum(glass + 110, 255)
    rgb[np.broadcast_to(label, size)] = _jittered(rng, BOTTLE_LABEL)
    rgb[np.broadcast_to(cap, size)] = _jittered(rng, _pick(rng, BOTTLE_CAPS))
    return box, np.broadcast_to(body | neck | cap, size).copy(), rgb


def _crowd(rng, cy, cx, side, shape):
    """A pile of small balls or bottles, annotated as one crowd segment."""
    category = BALL if rng.random() < 0.5 else BOTTLE
    spread = CROWD_RADIUS * side
    box = _window(cy, cx, spread * 1.5, spread * 1.5, shape)
    yy, xx = _grid(box)
    size = (box[2] - box[0], box[3] - box[1])
    mask, rgb = np.zeros(size, bool), np.zeros(size + (3,), np.float32)
    for _ in range(int(rng.integers(CROWD_MEMBERS[0], CROWD_MEMBERS[1] + 1))):
        r = rng.uniform(*CROWD_MEMBER_RADIUS) * side
        my, mx = cy + rng.uniform(-1, 1) * spread, cx + rng.uniform(-1, 1) * spread
        if category == BALL:
            member, colors = _ball_paint(yy, xx, my, mx, r, rng)
        else:
            member = _rounded_rect(yy, xx, my - 1.5 * r, mx - 0.5 * r, my + 1.5 * r,
                                   mx + 0.5 * r, 0.25 * r)
            colors = _paint(size, _jittered(rng, _pick(rng, GLASS)))
        member = np.broadcast_to(member, size)
        mask |= member
        rgb[member] = np.broadcast_to(colors, size + (3,))[member]
    return category, box, mask, rgb


# ------------------------------------------------------------------------------ scene

def _stuff_texture(rng, category, yy, xx, horizon, scale, shape):
    """[H, W, 3] float32 texture of one stuff class over the whole image (yy [H, 1], xx [1, W],
    horizon [1, W])."""
    if category == SKY:
        t = np.clip(yy / np.maximum(horizon, 1.0), 0, 1)[..., None]
        texture = np.float32(SKY_ZENITH) * (1 - t) + np.float32(SKY_HORIZON) * t
    elif category == GRASS:
        noise = rng.standard_normal(shape, dtype=np.float32)
        streaks = np.sin(2 * np.pi * xx / (GRASS_STREAK_PERIOD * scale)
                         + rng.uniform(0, 2 * np.pi)).astype(np.float32)
        texture = (np.float32(GRASS_COLOR) + (GRASS_NOISE * noise + GRASS_STREAKS * streaks)
                   [..., None] * np.float32(GRASS_NOISE_CHANNELS))
    elif category == WALL:
        row_h = max(4, round(BRICK_HEIGHT * scale))
        brick_w, mortar = max(8, round(2 * BRICK_HEIGHT * scale)), max(1, round(scale))
        row = np.floor(yy / row_h)
        joints = ((yy % row_h) < mortar) | (((xx + (row % 2) * brick_w / 2) % brick_w) < mortar)
        texture = np.where(joints[..., None], np.float32(MORTAR_COLOR), np.float32(BRICK_COLOR))
    else:
        tile = max(4, round(FLOOR_TILE * scale))
        checker = ((np.floor(yy / tile) + np.floor(xx / tile)) % 2).astype(bool)
        texture = np.where(checker[..., None], np.float32(FLOOR_TILES[0]),
                           np.float32(FLOOR_TILES[1]))
    return np.broadcast_to(texture, shape + (3,)).astype(np.float32)


def _stuff(rng, shape, scale):
    """Stuff category of every pixel [H, W] int64 and the textured background [H, W, 3]."""
    height, width = shape
    yy, xx = _grid((0, 0, height, width))
    horizon = height * (rng.uniform(*HORIZON) + HORIZON_WAVE * rng.uniform(0, 1)
                        * np.sin(2 * np.pi * xx / (width * rng.uniform(0.5, 1.5))
                                 + rng.uniform(0, 2 * np.pi)))
    upper = np.broadcast_to(yy < horizon, shape)
    top, bottom = (SKY, WALL)[int(rng.integers(2))], (GRASS, FLOOR)[int(rng.integers(2))]
    classes = np.where(upper, top, bottom).astype(np.int64)
    for region, other, probability in ((upper, SKY + WALL - top, SPLIT_TOP_PROBABILITY),
                                       (~upper, GRASS + FLOOR - bottom, SPLIT_BOTTOM_PROBABILITY)):
        if rng.random() < probability:
            split = width * rng.uniform(0.3, 0.7)
            side = (xx >= split) if rng.random() < 0.5 else (xx < split)
            classes[region & np.broadcast_to(side, shape)] = other

    image = np.zeros(shape + (3,), np.float32)
    for category in np.unique(classes):
        texture = _stuff_texture(rng, int(category), yy, xx, horizon, scale, shape)
        texture *= rng.uniform(1 - COLOR_JITTER, 1 + COLOR_JITTER)
        np.copyto(image, texture, where=(classes == category)[..., None])
    return classes, image


def _void(rng, classes, scale):
    """[H, W] bool unlabeled pixels: thin bands on stuff boundaries and maybe a pole."""
    void = np.zeros(classes.shape, bool)
    if rng.random() < BOUNDARY_VOID_PROBABILITY:
        radius = max(1, round(scale))
        for shift in range(1, radius + 1):
            vertical = classes[shift:, :] != classes[:-shift, :]
            horizontal = classes[:, shift:] != classes[:, :-shift]
            void[shift:, :] |= vertical
            void[:, shift:] |= horizontal
    pole = np.zeros(classes.shape, bool)
    if rng.random() < POLE_PROBABILITY:
        pole_w = max(2, round(2 * scale))
        x = int(rng.integers(0, classes.shape[1] - pole_w))
        y = int(rng.integers(0, classes.shape[0] // 2))
        pole[y:, x:x + pole_w] = True
    return void | pole, pole


def _place_near(rng, anchor: _Thing, half_h, half_w, shape):
    """A centre in the image whose box overlaps the anchor's box, offset by part of both."""
    ay, ax = anchor.center()
    dy = rng.uniform(-0.7, 0.7) * (anchor.height / 2 + half_h)
    dx = rng.uniform(-0.7, 0.7) * (anchor.width / 2 + half_w)
    return float(np.clip(ay + dy, 0, shape[0])), float(np.clip(ax + dx, 0, shape[1]))


def _other_thing(rng, category, side):
    """Half extents (half_h, half_w) of a ball, suitcase or bottle of random size, and its
    builder (cy, cx, shape) -> (box, mask, rgb)."""
    if category == BALL:
        radius = rng.uniform(*BALL_RADIUS) * side
        return (radius, radius), lambda cy, cx, shape: _ball(rng, cy, cx, radius, shape)
    if category == SUITCASE:
        height = rng.uniform(*SUITCASE_HEIGHT) * side
        width = rng.uniform(*SUITCASE_WIDTH) * side
        return ((height / 2, width / 2),
                lambda cy, cx, shape: _suitcase(rng, cy, cx, height, width, shape))
    width = rng.uniform(*BOTTLE_WIDTH) * side
    return ((BOTTLE_HALF_HEIGHT * width, width / 2),
            lambda cy, cx, shape: _bottle(rng, cy, cx, width, shape))


def _things(rng, shape, side):
    """The scene's things (whole masks, depths); ties counted in the 3-8 things."""
    height, width = shape
    rank = {category: i for i, category in enumerate(FRONT_TO_BACK)}
    total = int(rng.integers(THINGS_PER_IMAGE[0], THINGS_PER_IMAGE[1] + 1))
    persons = min(total, int(rng.choice(len(PERSON_COUNT_PROBABILITIES),
                                        p=PERSON_COUNT_PROBABILITIES)))
    things = []

    def random_center():
        return rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width

    for _ in range(persons):
        h = rng.uniform(*PERSON_HEIGHT) * side
        earlier = [t for t in things if t.category_id == PERSON]
        if earlier and rng.random() < PERSON_ANCHOR_PROBABILITY:
            cy, cx = _place_near(rng, earlier[int(rng.integers(len(earlier)))], h / 2,
                                 PERSON_HALF_WIDTH * h, shape)
        else:
            cy, cx = random_center()
        box, mask, rgb, geometry = _person(rng, cy, cx, h, shape)
        person = _Thing(PERSON, box, mask, rgb, rank[PERSON] + rng.uniform(
            0, WITHIN_CLASS_DEPTH_JITTER))
        things.append(person)
        if len(things) < total and rng.random() < TIE_PROBABILITY:
            tie_mask, tie_rgb = _tie(rng, box, mask, geometry)
            things.append(_Thing(TIE, box, tie_mask, tie_rgb, person.depth, layer=1))

    while len(things) < total:
        category = OTHER_THINGS[int(rng.choice(len(OTHER_THINGS), p=OTHER_THING_PROBABILITIES))]
        half_size, build = _other_thing(rng, category, side)
        anchors = [t for t in things if t.category_id not in (category, TIE)]
        anchor = None
        if anchors and rng.random() < ANCHOR_PROBABILITY:
            anchor = anchors[int(rng.integers(len(anchors)))]
            cy, cx = _place_near(rng, anchor, *half_size, shape)
        else:
            cy, cx = random_center()
        built = build(cy, cx, shape)
        depth = rank[category] + rng.uniform(0, WITHIN_CLASS_DEPTH_JITTER)
        if anchor is not None and rng.random() >= DEPTH_ORDER_PROBABILITY:
            behind = rank[category] < rank[anchor.category_id]  # reversed: goes behind it
            depth = anchor.depth + (REVERSED_DEPTH_OFFSET if behind else -REVERSED_DEPTH_OFFSET)
        things.append(_Thing(category, *built, depth))

    if rng.random() < CROWD_PROBABILITY:
        category, box, mask, rgb = _crowd(rng, *random_center(), side, shape)
        things.append(_Thing(category, box, mask, rgb, len(FRONT_TO_BACK) + 1, iscrowd=1))
    return things


def _segment_ids(rng, count: int) -> list:
    """`count` distinct random non-void segment ids, using all three PNG channels."""
    ids = []
    while len(ids) < count:
        candidate = int(rng.integers(1, ID_BASE ** 3))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def _back_to_front(things) -> list:
    """Drawing order: deepest first; a tie follows its person (same depth, higher layer)."""
    return sorted(things, key=lambda t: (-t.depth, t.layer))


def _ownership(stuff_ids, void, things):
    """[H, W] segment id of the visible owner: stuff, then void, then things back to front."""
    ids = stuff_ids.copy()
    ids[void] = VOID_ID
    for thing in _back_to_front(things):
        y0, x0, y1, x1 = thing.box
        ids[y0:y1, x0:x1][thing.mask] = thing.segment_id
    return ids


def _visible_area(ids, thing: _Thing) -> int:
    y0, x0, y1, x1 = thing.box
    return int(np.count_nonzero(ids[y0:y1, x0:x1] == thing.segment_id))


def render_scene(rng: np.random.Generator, shape) -> tuple:
    """One synthetic scene.

    Returns (image [H, W, 3] uint8, segment ids [H, W] int64, segments_info list,
    instances: list of (category_id, whole mask [H, W] bool, iscrowd)).
    """
    scale = min(shape) / REFERENCE_SIDE
    classes, image = _stuff(rng, shape, scale)
    void, pole = _void(rng, classes, scale)
    image[pole] = POLE_COLOR
    things = _things(rng, shape, min(shape))
    stuff_categories = [int(c) for c in np.unique(classes)]
    ids = _segment_ids(rng, len(stuff_categories) + len(things))
    stuff_segment = dict(zip(stuff_categories, ids))
    stuff_ids = np.zeros(shape, np.int64)
    for category, segment_id in stuff_segment.items():
        stuff_ids[classes == category] = segment_id
    for thing, segment_id in zip(things, ids[len(stuff_categories):]):
        thing.segment_id = segment_id
    while True:  # drop things left (almost) invisible; their pixels go to what lies below
        owner = _ownership(stuff_ids, void, things)
        kept = [t for t in things if _visible_area(owner, t) >= MIN_VISIBLE_AREA]
        if len(kept) == len(things):
            break
        things = kept

    for thing in _back_to_front(things):
        y0, x0, y1, x1 = thing.box
        image[y0:y1, x0:x1][thing.mask] = thing.rgb[thing.mask]
    image *= rng.uniform(1 - BRIGHTNESS_JITTER, 1 + BRIGHTNESS_JITTER)
    image += PIXEL_NOISE * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    segments = [measured_segment(owner, segment_id, category, 0)
                for category, segment_id in stuff_segment.items()
                if np.any(owner == segment_id)]
    segments += [measured_segment(owner, t.segment_id, t.category_id, t.iscrowd) for t in things]
    instances = [(t.category_id, t.full_mask(shape), t.iscrowd) for t in things]
    return image, owner, segments, instances


# ------------------------------------------------------------------------------ files

def _encode(save, array: np.ndarray, path: str):
    """Encode in memory, then write atomically."""
    buffer = io.BytesIO()
    save(Image.fromarray(array), buffer)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())


def _instance_annotation(annotation_id, image_id, category_id, mask, iscrowd) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"id": annotation_id, "image_id": image_id, "category_id": int(category_id),
            "segmentation": rle, "area": int(mask_util.area(rle)),
            "bbox": [float(v) for v in mask_util.toBbox(rle)], "iscrowd": int(iscrowd)}


def _write_split(out_dir: str, split: str, count: int, seed: int, shape, tick) -> dict:
    base = os.path.join(out_dir, split)
    paths = {"image_dir": os.path.join(base, "images"),
             "panoptic_dir": os.path.join(base, "panoptic"),
             "panoptic_json": os.path.join(base, "panoptic.json"),
             "instances_json": os.path.join(base, "instances.json")}
    for key in ("panoptic_json", "instances_json"):  # an interrupted run must not look complete
        if os.path.exists(paths[key]):
            os.remove(paths[key])
    os.makedirs(paths["image_dir"], exist_ok=True)
    os.makedirs(paths["panoptic_dir"], exist_ok=True)
    images, panoptic, instances = [], [], []
    split_index = SPLITS.index(split)
    for index in range(count):
        image_id = SPLIT_ID_OFFSET * split_index + index + 1
        rng = np.random.default_rng([seed, split_index, index])
        image, ids, segments, objects = render_scene(rng, shape)
        stem = f"{image_id:012d}"
        _encode(lambda im, f: im.save(f, format="JPEG", quality=JPEG_QUALITY, subsampling=0),
                image, os.path.join(paths["image_dir"], stem + ".jpg"))
        _encode(lambda im, f: im.save(f, format="PNG"), id_to_rgb(ids),
                os.path.join(paths["panoptic_dir"], stem + ".png"))
        images.append({"id": image_id, "file_name": stem + ".jpg", "height": shape[0],
                       "width": shape[1]})
        panoptic.append({"image_id": image_id, "file_name": stem + ".png",
                         "segments_info": segments})
        for category_id, mask, iscrowd in objects:
            instances.append(_instance_annotation(len(instances) + 1, image_id, category_id,
                                                  mask, iscrowd))
        tick()
    info = {"description": f"oanet_tf synthetic COCO panoptic dataset, {split} split",
            "seed": seed, "image_size": list(shape)}
    write_json(paths["instances_json"], {
        "info": info, "images": images, "annotations": instances,
        "categories": [{k: c[k] for k in ("id", "name", "supercategory")}
                       for c in CATEGORIES if c["isthing"]]})
    write_json(paths["panoptic_json"], {"info": info, "images": images,
                                        "annotations": panoptic,
                                        "categories": [dict(c) for c in CATEGORIES]})
    return dict(paths, images=count, segments=sum(len(a["segments_info"]) for a in panoptic),
                instances=len(instances))


def make_synthetic_dataset(out_dir: str, num_train: int, num_val: int, seed: int,
                           size=(128, 128), progress: bool = False) -> dict:
    """Write the synthetic dataset (layout in the module docstring) and return a summary:
    {out_dir, size, seed, num_images, seconds, images_per_minute, train: {...}, val: {...}}
    where each split lists its paths and its counts of images, segments and instances."""
    counts = {"train": num_train, "val": num_val}
    for split, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not (
                0 <= count < SPLIT_ID_OFFSET):
            raise ValueError(f"num_{split} must be an integer in [0, {SPLIT_ID_OFFSET}), "
                             f"got {count!r}")
    shape = tuple(int(v) for v in size)
    if len(shape) != 2 or min(shape) < MIN_SIDE:
        raise ValueError(f"size must be (height, width) with both sides >= {MIN_SIDE}, "
                         f"got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DatasetError(f"cannot write the synthetic dataset to {out_dir}: it is a file, "
                           f"not a folder")

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_train + num_val, unit="img", desc="synthetic dataset")
    start = time.perf_counter()
    summary = {"out_dir": out_dir, "size": list(shape), "seed": int(seed),
               "num_images": num_train + num_val}
    try:
        for split, count in counts.items():
            summary[split] = _write_split(out_dir, split, int(count), int(seed), shape,
                                          bar.update if bar else lambda: None)
    finally:
        if bar:
            bar.close()
    seconds = time.perf_counter() - start
    summary["seconds"] = seconds
    summary["images_per_minute"] = 60.0 * summary["num_images"] / seconds if seconds > 0 else 0.0
    return summary
