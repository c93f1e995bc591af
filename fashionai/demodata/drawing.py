"""Drawing the demo figure with OpenCV, in body units: colours, the pen, the body, generic clothes.

Body units: u across (0 = body centre), v down (0 = head top, 1 = soles); a `Pen` maps them onto an
image. fashionai.demodata.scenes composes these pieces into one scene per class of each task.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# --- the figure, in body units: u across (0 = body centre), v down (0 = head top, 1 = soles) ------
HEAD = ((0.0, 0.075), (0.052, 0.068))
NECK_TOP, NECK_BOTTOM, NECK_HALF = 0.12, 0.19, 0.024
SHOULDER = (0.105, 0.195)
WAIST_Y, HIP_Y, KNEE_Y, ANKLE_Y, SOLE_Y = 0.40, 0.49, 0.72, 0.94, 0.985
ARM_LENGTH, ARM_WIDTH, HAND_RADIUS = 0.30, 0.042, 0.028
TORSO = [(-0.105, 0.19), (0.105, 0.19), (0.097, 0.25), (0.072, WAIST_Y), (0.095, HIP_Y),
         (-0.095, HIP_Y), (-0.072, WAIST_Y), (-0.097, 0.25)]


SKIN_TONES = ((189, 214, 241), (151, 185, 224), (112, 150, 198), (80, 112, 160), (60, 82, 118))
HAIR_TONES = ((20, 20, 25), (30, 45, 70), (50, 90, 140), (110, 170, 215), (40, 40, 120))

BGR = tuple[int, int, int]


# --- colours ------------------------------------------------------------------------------------
def random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.25, 1.0),
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
        colour = random_colour(rng)
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
        return Style(skin, hair, garment, other, accent, random_colour(rng, val=(0.05, 0.5)),
                     bool(rng.random() < 0.4))


# --- drawing in body units ----------------------------------------------------------------------
_SHIFT = 4  # sub-pixel bits for cv2 drawing: smooth edges at small sizes


@dataclass
class Pen:
    """Draws on `img` in body units: pixel = (ox + u * scale * stretch, oy + v * scale).

    `stretch` widens or narrows the figure (shop photos: slim to broad bodies) without moving any
    landmark's height, so a length class stays defined by the body's own hips, knees and ankles."""

    img: np.ndarray
    ox: float
    oy: float
    scale: float
    stretch: float = 1.0

    def _p(self, u: float, v: float) -> tuple[int, int]:
        f = 1 << _SHIFT
        return (int(round((self.ox + u * self.scale * self.stretch) * f)),
                int(round((self.oy + v * self.scale) * f)))

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


def both_sides(points: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
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


def outline(bottom: float, widen: float = 0.0, flare: float = 0.0) -> list[tuple[float, float]]:
    """Torso-shaped garment outline from the shoulders to `bottom`; `flare` widens it below the hips."""
    def half(v: float) -> float:
        return float(np.interp(v, (0.25, WAIST_Y, HIP_Y), (0.097, 0.072, 0.095))) + flare * max(0.0, v - HIP_Y)

    right = [(0.105, 0.185), (0.097, 0.25)] + ([(0.072, WAIST_Y)] if bottom > WAIST_Y + 0.01 else [])
    right = [(u + widen, v) for u, v in right + [(half(bottom), bottom)]]
    return right + _mirror(reversed(right))


def draw_top(pen: Pen, colour: BGR, bottom: float = HIP_Y - 0.02) -> None:
    """A plain top from the shoulders to `bottom`."""
    pen.poly(outline(bottom), colour)


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
