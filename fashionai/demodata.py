"""A small, learnable dataset in the exact FashionAI layout, drawn with OpenCV from a seed.

Written under `out` (see docs/design.md and FASHIONAI.md for the formats):
```
base/Annotations/label.csv                 training labels, all selected tasks, grouped by task
base/Images/<task>/<id>.jpg
web/Annotations/skirt_length_labels.csv    warm-up labels (skirt task only, like the real data)
web/Images/skirt_length_labels/<id>.jpg
rank/Tests/question.csv                    test questions, grouped by task, third field `?`
rank/Tests/answers.csv                     their ground truth in label format, question order
rank/Images/<task>/<id>.jpg
demo.json                                  the generator's parameters and counts (marks the root)
```
Every image shows a stylised figure whose garment encodes the class with a coarse signature that
survives downscaling to 64 px, flips and mild crops: for length tasks the hem (or sleeve end)
relative to fixed body landmarks, for design tasks a large neck/collar/lapel shape; class 0
("Invisible") crops the relevant part out of the frame or covers it. Background clutter, random
colours, position/scale jitter, blur and noise keep it from being trivial.

Determinism: each image draws from its own `numpy.random.Generator` seeded by (seed, task, split,
class, number), so the same arguments give byte-identical files whatever else is generated.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fashionai.tasks import TASK_NAMES, check_task, label_string, num_classes

log = logging.getLogger(__name__)

WARMUP_TASK = "skirt_length_labels"
MARKER = "demo.json"
SPLITS = ("train", "warmup", "test")  # fixed order: part of every image's seed
# split -> (subset folder, annotation file inside it)
SPLIT_FILES = {
    "train": ("base", "Annotations/label.csv"),
    "warmup": ("web", f"Annotations/{WARMUP_TASK}.csv"),
    "test": ("rank", "Tests/question.csv"),
}
ANSWERS = "rank/Tests/answers.csv"
# How far a row that carries an `m` is drawn towards that class (length tasks): ambiguous on purpose.
MAYBE_PULL = 0.35

# --- the figure, in body units: u across (0 = body centre), v down (0 = head top, 1 = soles) ------
HEAD = ((0.0, 0.075), (0.052, 0.068))
NECK_TOP, NECK_BOTTOM, NECK_HALF = 0.12, 0.19, 0.024
SHOULDER = (0.105, 0.195)
WAIST_Y, HIP_Y, KNEE_Y, ANKLE_Y, SOLE_Y = 0.40, 0.49, 0.72, 0.94, 0.985
ARM_LENGTH, ARM_WIDTH, HAND_RADIUS = 0.30, 0.042, 0.028
TORSO = [(-0.105, 0.19), (0.105, 0.19), (0.097, 0.25), (0.072, WAIST_Y), (0.095, HIP_Y),
         (-0.095, HIP_Y), (-0.072, WAIST_Y), (-0.097, 0.25)]

# Hem heights (v) per class of the length tasks; index 0 (Invisible) is unused.
SKIRT_HEMS = (None, 0.57, 0.70, 0.81, 0.91, 0.995)
COAT_HEMS = (None, 0.34, 0.46, 0.56, 0.64, 0.72, 0.82, 0.95)
PANT_HEMS = (None, 0.57, 0.69, 0.785, 0.87, 0.975)
# Sleeve end as a fraction of shoulder-to-wrist length; > 1 covers the hand.
SLEEVE_ENDS = (None, 0.0, 0.12, 0.28, 0.47, 0.65, 0.86, 1.06, 1.32)

# Framing windows (v_top, v_bottom) and width/height aspect ranges. Near-square images with a
# margin round the figure: the usual "short side to 1.14x, centre/random crop" keeps the class.
FRAMES = {
    "full": ((-0.08, 1.08), (0.85, 1.25)),
    "three_quarter": ((-0.06, 0.68), (0.85, 1.25)),
    "lapel": ((-0.02, 0.54), (0.85, 1.25)),
    "close": ((-0.01, 0.43), (0.85, 1.25)),
    "head_and_chest": ((-0.02, 0.35), (0.85, 1.25)),
    "legs": ((0.52, 1.06), (0.85, 1.25)),
}
SKIN_TONES = ((189, 214, 241), (151, 185, 224), (112, 150, 198), (80, 112, 160), (60, 82, 118))
HAIR_TONES = ((20, 20, 25), (30, 45, 70), (50, 90, 140), (110, 170, 215), (40, 40, 120))

BGR = tuple[int, int, int]


# --- colours ------------------------------------------------------------------------------------
def _colour(rng: np.random.Generator, sat: tuple[float, float] = (0.25, 1.0),
            val: tuple[float, float] = (0.15, 0.95)) -> BGR:
    """A random colour (hue uniform) as BGR ints."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return int(b * 255), int(g * 255), int(r * 255)


def _jitter(rng: np.random.Generator, base: Sequence[int], amount: int) -> BGR:
    return tuple(min(255, max(0, c + int(rng.integers(-amount, amount + 1)))) for c in base)


def _far(a: BGR, b: BGR, distance: float = 110.0) -> bool:
    return float(np.linalg.norm(np.subtract(a, b, dtype=float))) >= distance


def _contrasting(rng: np.random.Generator, *others: BGR, distance: float = 110.0) -> BGR:
    """A random colour at least `distance` (RGB Euclidean) from every colour in `others`.

    The class lives in garment-versus-skin and garment-versus-garment edges; a garment the colour
    of the skin would erase it, so colours are resampled until they differ.
    """
    for _ in range(50):
        colour = _colour(rng)
        if all(_far(colour, o, distance) for o in others):
            return colour
    return tuple(255 - c for c in others[0])  # the inverse always differs from the first


def shade(colour: BGR, amount: float = 0.5) -> BGR:
    """The colour moved `amount` towards black if it is light, towards white if dark: a visible
    fold, edge or lapel in the same fabric, whatever the fabric's colour."""
    target = 0 if sum(colour) > 3 * 128 else 255
    return tuple(int(c + amount * (target - c)) for c in colour)


@dataclass(frozen=True)
class Style:
    """The colours of one image: skin, hair, the task's garment, the other clothes, the accent."""

    skin: BGR
    hair: BGR
    garment: BGR
    other: BGR
    accent: BGR
    shoes: BGR
    long_hair: bool

    @staticmethod
    def sample(rng: np.random.Generator) -> Style:
        skin = _jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 12)
        hair = _jitter(rng, HAIR_TONES[rng.integers(len(HAIR_TONES))], 15)
        garment = _contrasting(rng, skin)
        other = _contrasting(rng, garment, skin, distance=90.0)
        accent = _contrasting(rng, garment, skin, distance=120.0)
        return Style(skin, hair, garment, other, accent, _colour(rng, val=(0.05, 0.5)),
                     bool(rng.random() < 0.4))


# --- drawing in body units ----------------------------------------------------------------------
_SHIFT = 4  # sub-pixel bits for cv2 drawing: smooth edges at small sizes


@dataclass
class Pen:
    """Draws on `img` in body units: pixel = (ox + u * scale, oy + v * scale)."""

    img: np.ndarray
    ox: float
    oy: float
    scale: float

    def _p(self, u: float, v: float) -> tuple[int, int]:
        f = 1 << _SHIFT
        return int(round((self.ox + u * self.scale) * f)), int(round((self.oy + v * self.scale) * f))

    def _len(self, d: float) -> int:
        return int(round(d * self.scale * (1 << _SHIFT)))

    def poly(self, points: Iterable[tuple[float, float]], colour: BGR) -> None:
        pts = np.array([self._p(u, v) for u, v in points], np.int32)
        cv2.fillPoly(self.img, [pts], colour, cv2.LINE_AA, _SHIFT)

    def ellipse(self, centre: tuple[float, float], axes: tuple[float, float], colour: BGR,
                angle: float = 0.0, start: float = 0.0, end: float = 360.0, thickness: float = 0) -> None:
        width = -1 if thickness <= 0 else max(1, int(round(thickness * self.scale)))
        cv2.ellipse(self.img, self._p(*centre), (self._len(axes[0]), self._len(axes[1])), angle,
                    start, end, colour, width, cv2.LINE_AA, _SHIFT)

    def line(self, a: tuple[float, float], b: tuple[float, float], width: float, colour: BGR) -> None:
        """A thick segment with round caps (cv2 rounds them); `width` in body units."""
        cv2.line(self.img, self._p(*a), self._p(*b), colour, max(1, int(round(width * self.scale))),
                 cv2.LINE_AA, _SHIFT)

    def polyline(self, points: Iterable[tuple[float, float]], width: float, colour: BGR) -> None:
        pts = np.array([self._p(u, v) for u, v in points], np.int32)
        cv2.polylines(self.img, [pts], False, colour, max(1, int(round(width * self.scale))),
                      cv2.LINE_AA, _SHIFT)


def _mirror(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(-u, v) for u, v in points]


def _both(points: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """The left-side shape and its mirror image: most garment parts come in symmetric pairs."""
    return [list(points), _mirror(points)]


def _arm_points(side: int, angle_deg: float, fraction: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Shoulder joint and the point `fraction` of the way to the wrist, for side -1 (left) / +1."""
    a = np.radians(angle_deg)
    start = (side * (SHOULDER[0] - 0.008), SHOULDER[1] + 0.012)
    d = fraction * ARM_LENGTH
    return start, (start[0] + side * d * np.sin(a), start[1] + d * np.cos(a))


# --- the body and generic clothes ---------------------------------------------------------------
@dataclass(frozen=True)
class Pose:
    """What the body looks like apart from the task's garment."""

    arm_angle: float
    head_back: bool = False  # seen from behind: hair covers head and neck


# Legs stand apart (outer, inner edge at the hips and at the ankles) so a gap shows between them.
LEG_HIP, LEG_ANKLE = (0.095, 0.006), (0.112, 0.062)


def _draw_legs(pen: Pen, st: Style) -> None:
    for side in (-1, 1):
        (oh, ih), (oa, ia) = LEG_HIP, LEG_ANKLE
        pen.poly([(side * oh, HIP_Y), (side * ih, HIP_Y + 0.01), (side * ia, ANKLE_Y), (side * oa, ANKLE_Y)],
                 st.skin)
        pen.ellipse((side * (oa + ia) / 2, 0.965), (0.036, 0.021), st.shoes)


def _draw_arms(pen: Pen, st: Style, pose: Pose) -> None:
    for side in (-1, 1):
        start, wrist = _arm_points(side, pose.arm_angle, 1.0)
        pen.line(start, wrist, ARM_WIDTH, st.skin)
        _, hand = _arm_points(side, pose.arm_angle, 1.0 + HAND_RADIUS / ARM_LENGTH)
        pen.ellipse(hand, (HAND_RADIUS, HAND_RADIUS), st.skin)


def _draw_head(pen: Pen, st: Style, pose: Pose) -> None:
    (hu, hv), axes = HEAD
    if st.long_hair or pose.head_back:
        pen.poly([(-0.062, 0.07), (0.062, 0.07), (0.07, 0.26), (-0.07, 0.26)], st.hair)
    pen.poly([(-NECK_HALF, NECK_TOP), (NECK_HALF, NECK_TOP), (NECK_HALF + 0.004, NECK_BOTTOM),
              (-NECK_HALF - 0.004, NECK_BOTTOM)], st.skin)
    pen.ellipse((hu, hv), axes, st.skin)
    pen.ellipse((hu, hv - 0.008), (axes[0] + 0.006, axes[1]), st.hair, start=180, end=360)
    if pose.head_back:
        pen.ellipse((hu, hv), (axes[0] + 0.006, axes[1] + 0.004), st.hair)
        pen.poly([(-0.058, 0.08), (0.058, 0.08), (0.08, 0.30), (0.0, 0.32), (-0.08, 0.30)], st.hair)
    else:
        for side in (-1, 1):
            pen.ellipse((side * 0.02, 0.078), (0.006, 0.004), (40, 40, 40))


def draw_body(pen: Pen, st: Style, pose: Pose) -> None:
    """Skin everywhere: legs, shoes, arms, torso, neck, head; clothes are drawn on top."""
    _draw_legs(pen, st)
    _draw_arms(pen, st, pose)
    pen.poly(TORSO, st.skin)
    _draw_head(pen, st, pose)


def _outline(bottom: float, widen: float = 0.0, flare: float = 0.0) -> list[tuple[float, float]]:
    """Torso-shaped garment outline from the shoulders to `bottom`; `flare` widens it below the hips."""
    def half(v: float) -> float:
        return float(np.interp(v, (0.25, WAIST_Y, HIP_Y), (0.097, 0.072, 0.095))) + flare * max(0.0, v - HIP_Y)

    right = [(0.105, 0.185), (0.097, 0.25)] + ([(0.072, WAIST_Y)] if bottom > WAIST_Y + 0.01 else [])
    right = [(u + widen, v) for u, v in right + [(half(bottom), bottom)]]
    return right + _mirror(reversed(right))


def draw_top(pen: Pen, colour: BGR, bottom: float = HIP_Y - 0.02) -> None:
    """A plain top from the shoulders to `bottom`."""
    pen.poly(_outline(bottom), colour)


def draw_neck_opening(pen: Pen, st: Style, width: float = 0.035, depth: float = 0.025) -> None:
    pen.ellipse((0.0, NECK_BOTTOM - 0.004), (width, depth), st.skin, start=0, end=180)


def draw_sleeves(pen: Pen, colour: BGR, pose: Pose, fraction: float, width: float = 0.058) -> None:
    """Sleeves covering `fraction` of each arm from the shoulder (0 = none)."""
    if fraction <= 0:
        return
    for side in (-1, 1):
        start, end = _arm_points(side, pose.arm_angle, fraction)
        pen.ellipse((side * (SHOULDER[0] - 0.01), SHOULDER[1] + 0.01), (0.032, 0.026), colour)
        pen.line(start, end, width, colour)


def draw_trousers(pen: Pen, colour: BGR, hem: float, top: float = WAIST_Y) -> None:
    """Two trouser legs from `top` to `hem`, wider than the legs, with a dark cuff at the hem."""
    t = (min(hem, ANKLE_Y) - HIP_Y) / (ANKLE_Y - HIP_Y)
    outer, inner = 0.11 + (LEG_ANKLE[0] + 0.01 - 0.11) * t, (LEG_ANKLE[1] - 0.008) * t
    dark = shade(colour)
    pen.poly([(-0.078, top), (0.078, top), (0.11, HIP_Y), (-0.11, HIP_Y)], colour)
    for side in (-1, 1):
        pen.poly([(side * 0.11, HIP_Y), (0.0, HIP_Y + 0.02), (side * inner, hem), (side * outer, hem)], colour)
        pen.line((side * (inner + 0.006), hem - 0.006), (side * (outer - 0.006), hem - 0.006), 0.012, dark)


def draw_skirt(pen: Pen, colour: BGR, hem: float) -> None:
    """An A-line skirt from the waist to `hem`; it flares, so a longer skirt is also wider."""
    half = 0.085 + (hem - WAIST_Y) * 0.32
    pen.poly([(-0.074, WAIST_Y), (0.074, WAIST_Y), (half, hem), (-half, hem)], colour)
    pen.line((-0.074, WAIST_Y + 0.006), (0.074, WAIST_Y + 0.006), 0.012, shade(colour))
    pen.line((-half + 0.008, hem - 0.007), (half - 0.008, hem - 0.007), 0.014, shade(colour))


# --- the 8 tasks --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    """One image's content: the framing, the pose, and a function that draws the clothes."""

    frame: str
    pose: Pose
    draw: Callable[[Pen, Style], None]


def _lerp(table: Sequence[float | None], index: int, toward: int | None) -> float:
    value = table[index]
    if toward is None or table[toward] is None:
        return value
    return value + MAYBE_PULL * (table[toward] - value)


def _outfit(top_sleeve: float, pose: Pose, bottom: Callable[[Pen, Style], None] | None = None
            ) -> Callable[[Pen, Style], None]:
    """A default outfit (other-coloured top with sleeves), plus the task's garment from `bottom`."""
    def draw(pen: Pen, st: Style) -> None:
        if bottom is not None:
            bottom(pen, st)
        draw_top(pen, st.other, bottom=WAIST_Y + 0.02)
        draw_sleeves(pen, st.other, pose, top_sleeve)
        draw_neck_opening(pen, st)
    return draw


def skirt_scene(index: int, toward: int | None, rng: np.random.Generator) -> Scene:
    pose = Pose(arm_angle=rng.uniform(10, 22))
    if index == 0:  # the skirt is below the frame
        return Scene("head_and_chest", pose, _outfit(0.3, pose))
    hem = _lerp(SKIRT_HEMS, index, toward)
    return Scene("full", pose, _outfit(rng.choice([0.0, 0.3, 1.0]), pose,
                                       lambda pen, st: draw_skirt(pen, st.garment, hem)))


def pant_scene(index: int, toward: int | None, rng: np.random.Generator) -> Scene:
    pose = Pose(arm_angle=rng.uniform(10, 22))
    if index == 0:
        return Scene("head_and_chest", pose, _outfit(0.3, pose))
    hem = _lerp(PANT_HEMS, index, toward)
    return Scene("full", pose, _outfit(rng.choice([0.0, 0.3, 1.0]), pose,
                                       lambda pen, st: draw_trousers(pen, st.garment, hem)))


def _draw_coat(pen: Pen, st: Style, hem: float, pose: Pose) -> None:
    """Shorts in the other colour over bare legs (so the hem meets skin), then a long-sleeved coat
    to `hem` with an open front and a hem band."""
    draw_trousers(pen, st.other, 0.55)
    outline = _outline(hem, widen=0.007, flare=0.22)
    pen.poly(outline, st.garment)
    pen.line((0.0, 0.22), (0.0, hem), 0.008, shade(st.garment))
    half = outline[len(outline) // 2 - 1][0]
    pen.line((-half + 0.008, hem - 0.008), (half - 0.008, hem - 0.008), 0.016, shade(st.garment))
    pen.poly([(-0.03, 0.185), (0.03, 0.185), (0.0, 0.24)], st.accent)
    draw_sleeves(pen, st.garment, pose, 0.98, width=0.062)


def coat_scene(index: int, toward: int | None, rng: np.random.Generator) -> Scene:
    pose = Pose(arm_angle=rng.uniform(10, 20))
    if index == 0:
        return Scene("head_and_chest", pose, lambda pen, st: _draw_coat(pen, st, 0.5, pose))
    hem = _lerp(COAT_HEMS, index, toward)
    return Scene("full", pose, lambda pen, st: _draw_coat(pen, st, hem, pose))


def sleeve_scene(index: int, toward: int | None, rng: np.random.Generator) -> Scene:
    pose = Pose(arm_angle=rng.uniform(20, 28))
    end = 0.3 if index == 0 else _lerp(SLEEVE_ENDS, index, toward)

    def draw(pen: Pen, st: Style) -> None:
        draw_trousers(pen, st.other, ANKLE_Y + 0.01)
        draw_top(pen, st.garment, bottom=HIP_Y - 0.01)
        if end <= 0:  # sleeveless: narrow straps, bare shoulders
            for side in (-1, 1):
                pen.poly([(side * 0.105, 0.25), (side * 0.05, 0.19), (side * 0.078, 0.19), (side * 0.12, 0.25)], st.skin)
        draw_sleeves(pen, st.garment, pose, end)
        draw_neck_opening(pen, st)
    return Scene("legs" if index == 0 else "three_quarter", pose, draw)


def _collar(index: int, pen: Pen, st: Style) -> None:
    """Collar shapes drawn large in the accent colour over a plain top."""
    c = st.accent
    dark = shade(c)
    if index == 1:  # shirt collar: two pointed flaps and a V opening with a placket
        pen.poly([(-0.03, 0.185), (0.03, 0.185), (0.0, 0.26)], st.skin)
        for shape in _both([(-0.035, 0.17), (-0.002, 0.205), (-0.012, 0.265), (-0.07, 0.215)]):
            pen.poly(shape, c)
        pen.line((0.0, 0.26), (0.0, 0.42), 0.012, c)
    elif index == 2:  # Peter Pan: two flat round lobes
        draw_neck_opening(pen, st)
        for side in (-1, 1):
            pen.ellipse((side * 0.042, 0.208), (0.045, 0.034), c)
        pen.line((0.0, 0.19), (0.0, 0.245), 0.006, dark)
    elif index == 3:  # Puritan: a wide flat collar over the shoulders
        pen.ellipse((0.0, 0.19), (0.13, 0.10), c, start=0, end=180)
        pen.ellipse((0.0, NECK_BOTTOM - 0.004), (0.035, 0.025), st.skin, start=0, end=180)
    else:  # rib collar: a thick striped band round the neck
        pen.ellipse((0.0, NECK_BOTTOM - 0.012), (0.05, 0.042), c, start=0, end=180, thickness=0.026)
        for k in range(-4, 5):
            a = np.radians(90 + k * 17)
            pen.line((0.05 * np.cos(a) * 0.75, NECK_BOTTOM - 0.012 + 0.042 * np.sin(a) * 0.75),
                     (0.05 * np.cos(a) * 1.25, NECK_BOTTOM - 0.012 + 0.042 * np.sin(a) * 1.25), 0.004, dark)


def _lapel(index: int, pen: Pen, st: Style) -> None:
    """Jacket front: inner shirt in the other colour showing through the opening, then lapels."""
    lapel = shade(st.garment, 0.45)
    if index == 2:  # collarless: a small round opening, no lapel
        pen.ellipse((0.0, 0.19), (0.05, 0.045), st.other, start=0, end=180)
        pen.ellipse((0.0, 0.185), (0.03, 0.02), st.skin, start=0, end=180)
        return
    pen.poly([(-0.06, 0.185), (0.06, 0.185), (0.0, 0.37)], st.other)
    draw_neck_opening(pen, st, width=0.028, depth=0.02)
    if index == 1:  # notched: wide pointed lapels with a gap (notch) under the collar
        for shape in _both([(-0.06, 0.18), (-0.025, 0.18), (-0.05, 0.215), (-0.02, 0.225), (0.0, 0.37),
                            (-0.11, 0.245)]):
            pen.poly(shape, lapel)
        for shape in _both([(-0.05, 0.215), (-0.088, 0.22), (-0.066, 0.205)]):
            pen.poly(shape, st.other)
    else:  # shawl: a smooth band along the opening; "plus size" is twice as wide and rounder
        width = 0.03 if index == 3 else 0.065
        for side in (-1, 1):
            pts = [(side * (0.06 + width * 0.3), 0.17), (side * 0.05, 0.24), (side * 0.025, 0.31), (0.0, 0.37)]
            pen.polyline(pts, width, lapel)


def _neck(index: int, pen: Pen, st: Style) -> None:
    """Neck designs in the garment colour, with a darker shade for folds."""
    c, dark = st.garment, shade(st.garment)
    draw_neck_opening(pen, st)
    if index in (1, 3):  # turtle neck (to the chin) / low turtle neck (half the neck)
        top = NECK_TOP + 0.008 if index == 1 else 0.162
        pen.poly([(-0.034, top), (0.034, top), (0.04, 0.2), (-0.04, 0.2)], c)
        for k in range(1, 4 if index == 1 else 2):
            v = top + k * (0.2 - top) / (4 if index == 1 else 2)
            pen.line((-0.036, v), (0.036, v), 0.005, dark)
    elif index == 2:  # ruffle semi-high: a frilled band of scallops at mid neck
        for k in range(-3, 4):
            pen.ellipse((k * 0.016, 0.175 - 0.004 * abs(k)), (0.017, 0.02), c)
            pen.ellipse((k * 0.016, 0.175 - 0.004 * abs(k)), (0.017, 0.02), dark, thickness=0.004)
    else:  # draped (cowl): a wide low scoop with hanging folds
        pen.ellipse((0.0, 0.185), (0.07, 0.06), st.skin, start=0, end=180)
        for k, depth in enumerate((0.06, 0.085, 0.11)):
            pen.ellipse((0.0, 0.185), (0.07 + 0.008 * k, depth), dark, start=10, end=170, thickness=0.008)


def _neckline(index: int, pen: Pen, st: Style, side: int) -> None:
    """The skin-coloured opening (or the bare shoulders) that the garment leaves."""
    s = st.skin
    if index in (1, 6, 8, 9):  # shoulders bare: redraw the upper torso in skin, then the top edge
        pen.poly([(-0.11, 0.185), (0.11, 0.185), (0.11, 0.3), (-0.11, 0.3)], s)
        if index == 1:  # strapless: straight edge across the chest
            pen.poly([(-0.1, 0.26), (0.1, 0.26), (0.1, 0.32), (-0.1, 0.32)], st.garment)
        elif index == 6:  # off shoulder: a band across the upper arms, sleeves below
            pen.poly([(-0.17, 0.225), (0.17, 0.225), (0.15, 0.30), (-0.15, 0.30)], st.garment)
        elif index == 8:  # sweetheart: two curves meeting in a dip at the centre
            pen.poly([(-0.1, 0.26), (-0.07, 0.235), (-0.035, 0.235), (0.0, 0.275), (0.035, 0.235),
                      (0.07, 0.235), (0.1, 0.26), (0.1, 0.32), (-0.1, 0.32)], st.garment)
        else:  # one shoulder: a diagonal from one shoulder to the other armpit
            pen.poly([(side * 0.12, 0.18), (side * 0.07, 0.18), (-side * 0.1, 0.26), (-side * 0.1, 0.32),
                      (side * 0.12, 0.32)], st.garment)
        return
    if index == 2:
        pen.poly([(-0.05, 0.18), (0.05, 0.18), (0.0, 0.36)], s)
    elif index == 3:  # straight (boat) neck: a level edge just under the collarbones
        pen.poly([(-0.085, 0.18), (0.085, 0.18), (0.085, 0.205), (-0.085, 0.205)], s)
    elif index == 4:
        pen.poly([(-0.045, 0.18), (0.045, 0.18), (0.0, 0.26)], s)
    elif index == 5:
        pen.poly([(-0.05, 0.18), (0.05, 0.18), (0.05, 0.255), (-0.05, 0.255)], s)
    elif index == 7:
        pen.ellipse((0.0, 0.18), (0.055, 0.055), s, start=0, end=180)


# Sleeve length of the top per neckline class: bare arms where the shoulders are bare.
NECKLINE_SLEEVES = (0.4, 0.0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.0, 0.0)
DESIGN_DETAILS = {
    "collar_design_labels": _collar, "lapel_design_labels": _lapel, "neck_design_labels": _neck,
}


def design_scene(task: str, index: int, rng: np.random.Generator) -> Scene:
    """Close-up of the upper body; class 0 is seen from behind (hair covers the neck)."""
    pose = Pose(arm_angle=rng.uniform(8, 16), head_back=index == 0)
    side = int(rng.choice([-1, 1]))  # which shoulder a one-shoulder neckline keeps
    sleeves = NECKLINE_SLEEVES[index] if task == "neckline_design_labels" else 1.0

    def draw(pen: Pen, st: Style) -> None:
        draw_top(pen, st.garment, bottom=HIP_Y)
        draw_sleeves(pen, st.garment, pose, sleeves)
        if index == 0:
            return
        if task == "neckline_design_labels":
            _neckline(index, pen, st, side)
        else:
            DESIGN_DETAILS[task](index, pen, st)
    return Scene("lapel" if task == "lapel_design_labels" else "close", pose, draw)


SCENES = {
    "skirt_length_labels": skirt_scene, "coat_length_labels": coat_scene,
    "pant_length_labels": pant_scene, "sleeve_length_labels": sleeve_scene,
}


def scene_for(task: str, index: int, toward: int | None, rng: np.random.Generator) -> Scene:
    """What to draw for class `index` of `task` (`toward`: the row's `m` class, if any)."""
    if task in SCENES:
        return SCENES[task](index, toward, rng)
    return design_scene(task, index, rng)


# --- images -------------------------------------------------------------------------------------
def _image_size(rng: np.random.Generator, aspect: tuple[float, float], min_size: int, max_size: int
                ) -> tuple[int, int]:
    """(height, width) with the long side in [min_size, max_size] and width/height in `aspect`."""
    long_side = int(rng.integers(min_size, max_size + 1))
    ratio = rng.uniform(*aspect)
    if ratio <= 1:
        return long_side, max(8, int(round(long_side * ratio)))
    return max(8, int(round(long_side / ratio))), long_side


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A vertical gradient with random rectangles, discs and lines: clutter behind the figure."""
    top, bottom = np.array(_colour(rng, sat=(0, 0.5))), np.array(_colour(rng, sat=(0, 0.5)))
    t = np.linspace(0, 1, h)[:, None, None]
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (top * (1 - t) + bottom * t).astype(np.uint8)
    mean = (top + bottom) / 2
    for _ in range(int(rng.integers(3, 9))):
        # clutter stays within +-70 of the background per channel: visible, but weaker than the figure
        colour = tuple(int(c) for c in np.clip(mean + rng.integers(-70, 71, 3), 0, 255))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(max(2, min(h, w) // 12), max(3, min(h, w) // 3)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), size // 2, colour, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), colour,
                     int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def _pen_for(img: np.ndarray, frame: str, rng: np.random.Generator) -> Pen:
    """Map the frame's body-unit window onto the image, with small scale and position jitter."""
    h, w = img.shape[:2]
    (v0, v1), _ = FRAMES[frame]
    scale = h / (v1 - v0) * rng.uniform(0.93, 1.05)
    oy = -v0 * scale + rng.uniform(-0.03, 0.03) * h
    ox = w / 2 + rng.uniform(-0.05, 0.05) * w
    return Pen(img, ox, oy, scale)


def render(task: str, index: int, rng: np.random.Generator, *, min_size: int = 160,
           max_size: int = 256, toward: int | None = None) -> np.ndarray:
    """One BGR uint8 image (h, w, 3) of class `index` of `task`, drawn from `rng` alone."""
    scene = scene_for(task, index, toward, rng)
    h, w = _image_size(rng, FRAMES[scene.frame][1], min_size, max_size)
    img = _background(rng, h, w)
    style = Style.sample(rng)
    pen = _pen_for(img, scene.frame, rng)
    draw_body(pen, style, scene.pose)
    scene.draw(pen, style)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    # Grey (luminance) noise: a third of the random numbers of colour noise, and it looks like it.
    noise = rng.standard_normal((*img.shape[:2], 1), dtype=np.float32) * np.float32(rng.uniform(2.0, 8.0))
    noisy = img.astype(np.int16)
    noisy += noise.astype(np.int16)
    img = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
    return cv2.flip(img, 1) if rng.random() < 0.5 else img


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """JPEG bytes at a fixed quality (libjpeg is deterministic: same pixels, same bytes)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {img.shape} image as JPEG")
    return buf.tobytes()


# --- rows ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoRow:
    """One generated image: where it goes, its class and optional `m` class, and its seed."""

    split: str
    task: str
    image_id: str
    index: int
    maybe: int | None
    seed: tuple[int, ...]

    @property
    def image(self) -> str:
        """The path written in the CSV, relative to base/, web/ or rank/."""
        return f"Images/{self.task}/{self.image_id}.jpg"

    @property
    def label(self) -> str:
        return label_string(self.task, self.index, () if self.maybe is None else (self.maybe,))


def image_id(seed: int, split: str, task: str, index: int, number: int) -> str:
    """A 32-hex-digit id like the real data's, derived from the image's seed (so reproducible)."""
    return hashlib.blake2s(f"{seed}/{split}/{task}/{index}/{number}".encode(), digest_size=16).hexdigest()


def _maybe_class(task: str, index: int, rng: np.random.Generator) -> int:
    """An adjacent class for an `m` (a plausible second class); never Invisible for a visible one."""
    if index == 0:
        return 1
    options = [c for c in (index - 1, index + 1) if 1 <= c < num_classes(task)]
    return int(rng.choice(options))


def plan_rows(task: str, split: str, per_class: int, maybe_fraction: float, seed: int) -> list[DemoRow]:
    """`per_class` rows per class of `task` in shuffled order; round(fraction * rows) carry an `m`."""
    t, sp = TASK_NAMES.index(task), SPLITS.index(split)
    rng = np.random.default_rng([seed, t, sp])
    pairs = [(c, n) for c in range(num_classes(task)) for n in range(per_class)]
    order = rng.permutation(len(pairs))
    with_maybe = set(rng.permutation(len(pairs))[:round(maybe_fraction * len(pairs))].tolist())
    rows = []
    for k in order.tolist():
        c, n = pairs[k]
        maybe = _maybe_class(task, c, rng) if k in with_maybe else None
        rows.append(DemoRow(split, task, image_id(seed, split, task, c, n), c, maybe, (seed, t, sp, c, n)))
    return rows


def _all_rows(tasks: Sequence[str], counts: dict[str, int], maybe_fraction: float, seed: int
              ) -> list[DemoRow]:
    """Every row of every split, grouped by split then task; ids checked unique across the root."""
    rows = []
    for split in SPLITS:
        for task in tasks:
            if split != "warmup" or task == WARMUP_TASK:
                rows += plan_rows(task, split, counts[split], maybe_fraction, seed)
    ids = [r.image_id for r in rows]
    if len(set(ids)) != len(ids):  # 128-bit hashes: would mean a bug in image_id
        raise AssertionError("duplicate demo image ids")
    return rows


# --- writing ------------------------------------------------------------------------------------
def _write_text(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="\n") as f:
        f.writelines(f"{line}\n" for line in lines)


def _write_csvs(rows: Sequence[DemoRow], root: Path) -> None:
    """label.csv, the warm-up CSV, question.csv and answers.csv (no header, `\\n` endings)."""
    for split, (subset, name) in SPLIT_FILES.items():
        chosen = [r for r in rows if r.split == split]
        if not chosen:
            continue
        third = (lambda r: "?") if split == "test" else (lambda r: r.label)
        _write_text(root / subset / name, (f"{r.image},{r.task},{third(r)}" for r in chosen))
        if split == "test":
            _write_text(root / ANSWERS, (f"{r.image},{r.task},{r.label}" for r in chosen))


def _write_images(rows: Sequence[DemoRow], root: Path, min_size: int, max_size: int, quality: int) -> None:
    for row in tqdm(rows, desc="demo images", unit="img", disable=None, leave=False):
        rng = np.random.default_rng(list(row.seed))
        img = render(row.task, row.index, rng, min_size=min_size, max_size=max_size, toward=row.maybe)
        path = root / SPLIT_FILES[row.split][0] / row.image
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(img, quality))


def _summary(rows: Sequence[DemoRow], tasks: Sequence[str], params: dict) -> dict:
    """Rows per task, split and class, and `m` rows per task and split."""
    per_task = {}
    for task in tasks:
        entry = {"classes": num_classes(task)}
        for split in SPLITS:
            mine = [r for r in rows if r.task == task and r.split == split]
            if mine:
                entry[split] = [sum(r.index == c for r in mine) for c in range(num_classes(task))]
                entry[f"{split}_maybe"] = sum(r.maybe is not None for r in mine)
        per_task[task] = entry
    totals = {split: sum(r.split == split for r in rows) for split in SPLITS}
    return {"params": params, "images": len(rows), "rows": totals, "tasks": per_task}


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to touch an existing folder unless asked, and never replace one we did not write."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass --overwrite (overwrite=True) "
                                  "to replace it")
        if not (out / MARKER).is_file():
            raise FileExistsError(f"{out} has no {MARKER}, so it is not demo data; refusing to replace "
                                  "it, remove it yourself")


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished `tmp` (same parent, so both renames are atomic)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def _check_args(counts: dict[str, int], min_size: int, max_size: int, maybe_fraction: float,
                quality: int) -> None:
    if counts["train"] < 1 or counts["test"] < 1 or counts["warmup"] < 0:
        raise ValueError(f"need train and test per class >= 1 and warm-up >= 0, got {counts}")
    if not 32 <= min_size <= max_size <= 4096:
        raise ValueError(f"image sizes need 32 <= min_size <= max_size <= 4096, got {min_size}, {max_size}")
    if not 0.0 <= maybe_fraction <= 1.0:
        raise ValueError(f"maybe_fraction must be in [0, 1], got {maybe_fraction}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")


def make_demo_data(
    out: str | Path, *, train_per_class: int = 80, test_per_class: int = 8, warmup_per_class: int = 10,
    min_size: int = 160, max_size: int = 256, maybe_fraction: float = 0.05, seed: int = 0,
    tasks: Sequence[str] = TASK_NAMES, quality: int = 90, overwrite: bool = False,
) -> dict:
    """Write a demo data root at `out` (layout in the module docstring); return its summary.

    The summary (also saved as `out/demo.json`) has `params`, `images`, `rows` per split and, per
    task, rows per class for `train` (base/), `warmup` (web/, skirt only) and `test` (rank/).
    """
    out = Path(out)
    tasks = [check_task(t) for t in (tasks.split(",") if isinstance(tasks, str) else tasks)]
    counts = {"train": train_per_class, "warmup": warmup_per_class, "test": test_per_class}
    _check_args(counts, min_size, max_size, maybe_fraction, quality)
    _check_out(out, overwrite)
    params = {"seed": seed, "tasks": tasks, "per_class": counts, "min_size": min_size,
              "max_size": max_size, "maybe_fraction": maybe_fraction, "quality": quality}
    rows = _all_rows(tasks, counts, maybe_fraction, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        _write_images(rows, tmp, min_size, max_size, quality)
        _write_csvs(rows, tmp)
        summary = _summary(rows, tasks, params)
        _write_text(tmp / MARKER, [json.dumps(summary, indent=2)])
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s", summary_line(summary, out))
    return {**summary, "out": str(out)}


def summary_line(summary: dict, out: str | Path) -> str:
    """One line: where, how many images per split, tasks, seed."""
    rows = summary["rows"]
    return (f"demo data in {out}: {summary['images']} images (train {rows['train']}, warm-up "
            f"{rows['warmup']}, test {rows['test']}) for {len(summary['tasks'])} task(s), "
            f"seed {summary['params']['seed']}")
