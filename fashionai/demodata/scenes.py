"""One scene per class of each of the 8 tasks, and the rendered demo image.

Every image shows a stylised figure whose garment encodes the class with a coarse signature that
survives downscaling to 64 px, flips and mild crops: for length tasks the hem (or sleeve end)
relative to fixed body landmarks, for design tasks a large neck/collar/lapel shape; class 0
("Invisible") crops the relevant part out of the frame or covers it. Background clutter, random
colours, position/scale jitter, blur and noise keep it from being trivial.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fashionai.demodata.drawing import (ANKLE_Y, HIP_Y, NECK_BOTTOM, NECK_TOP, WAIST_Y, Pen, Pose, Style, both_sides,
                                    draw_body, draw_neck_opening, draw_skirt, draw_sleeves, draw_top, draw_trousers,
                                    outline, random_colour, shade)

# How far a row that carries an `m` is drawn towards that class (length tasks): ambiguous on purpose.
MAYBE_PULL = 0.35


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
    shape = outline(hem, widen=0.007, flare=0.22)
    pen.poly(shape, st.garment)
    pen.line((0.0, 0.22), (0.0, hem), 0.008, shade(st.garment))
    half = shape[len(shape) // 2 - 1][0]
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
        for shape in both_sides([(-0.035, 0.17), (-0.002, 0.205), (-0.012, 0.265), (-0.07, 0.215)]):
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
        for shape in both_sides([(-0.06, 0.18), (-0.025, 0.18), (-0.05, 0.215), (-0.02, 0.225), (0.0, 0.37),
                                 (-0.11, 0.245)]):
            pen.poly(shape, lapel)
        for shape in both_sides([(-0.05, 0.215), (-0.088, 0.22), (-0.066, 0.205)]):
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


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A vertical gradient with random rectangles, discs and lines: clutter behind the figure."""
    top, bottom = np.array(random_colour(rng, sat=(0, 0.5))), np.array(random_colour(rng, sat=(0, 0.5)))
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
    img = background(rng, h, w)
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
