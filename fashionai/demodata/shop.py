"""The `shop` demo style: images framed like the competition's shop photos, harder to learn.

What differs from the `classic` style (fashionai.demodata.scenes.render), and why:
- mostly square images (the real data's shape), so a crop at the val view's scale cuts nothing and
  only an augmentation that moves the garment teaches position;
- full figures for the length tasks, at a scale and position that vary by +-15%: where a hem ends
  in the image says little, where it ends on the body (hip, knee, ankle) says everything;
- upper-body shots for the design tasks: the collar, lapel, neck or neckline is a small shape
  (5-15% of the image), so a 64 px input barely resolves it;
- slim to broad figures (`Pen.stretch`), a plain studio wall or a cluttered room, soft shadows;
- "Invisible" drawn as what it is in real photos: the part out of the frame, or covered, or the
  person seen from behind, varied per image.
Class imbalance and label noise are the row planner's (fashionai.demodata.generate).
"""

from __future__ import annotations

import cv2
import numpy as np

from fashionai.demodata.drawing import Pen, Pose, Style, draw_body, random_colour
from fashionai.demodata.scenes import Scene, background, scene_for

# Frames of shop photos (v_top, v_bottom in body units): what each classic frame becomes.
SHOP_FRAMES = {
    "full": (-0.07, 1.07),
    "three_quarter": (-0.05, 0.75),
    "lapel": (-0.04, 0.64),
    "close": (-0.04, 0.62),
    "head_and_chest": (-0.03, 0.42),
    "legs": (0.45, 1.06),
}
LENGTH_INVISIBLE = ("head_and_chest", "close")  # a length task's garment out of the frame: two crops
SQUARE_SHARE = 0.75  # share of exactly square images; the rest are portrait, width/height 0.75-1
SCALE_JITTER = (0.85, 1.12)
SHIFT = 0.08  # largest offset of the figure, as a share of the image side


def shop_scene(task: str, index: int, toward: int | None, rng: np.random.Generator) -> Scene:
    """The classic scene of the class, reframed for a shop photo; Invisible varies its framing."""
    scene = scene_for(task, index, toward, rng)
    if index != 0:
        return scene
    if scene.frame == "head_and_chest":  # a length task: skirt, trousers or coat out of the frame
        return Scene(str(rng.choice(LENGTH_INVISIBLE)), scene.pose, scene.draw)
    if scene.pose.head_back and rng.random() < 0.5:  # a design task: the neck cut off, or seen from behind
        return Scene("legs", Pose(scene.pose.arm_angle), scene.draw)
    return scene


def shop_size(rng: np.random.Generator, min_size: int, max_size: int) -> tuple[int, int]:
    """(height, width): long side in [min_size, max_size], square in SQUARE_SHARE of images, else portrait."""
    side = int(rng.integers(min_size, max_size + 1))
    if rng.random() < SQUARE_SHARE:
        return side, side
    return side, max(8, int(round(side * rng.uniform(0.75, 1.0))))


def studio(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A plain wall with a floor line and a soft vignette (half of shop photos), else a cluttered room."""
    if rng.random() < 0.5:
        return background(rng, h, w)
    wall = np.array(random_colour(rng, sat=(0.0, 0.25), val=(0.55, 0.95)), np.float32)
    floor = wall * np.float32(rng.uniform(0.6, 0.9))
    img = np.empty((h, w, 3), np.float32)
    img[:] = wall
    img[int(h * rng.uniform(0.75, 0.95)):] = floor
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    img *= (1.0 - np.float32(rng.uniform(0.1, 0.4)) * r2)[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def shop_pen(img: np.ndarray, frame: str, rng: np.random.Generator) -> Pen:
    """The frame's window onto the image with the shop jitter: scale, offset and body width."""
    h, w = img.shape[:2]
    v0, v1 = SHOP_FRAMES[frame]
    scale = h / (v1 - v0) * rng.uniform(*SCALE_JITTER)
    oy = -v0 * scale + rng.uniform(-SHIFT, SHIFT) * h
    ox = w / 2 + rng.uniform(-SHIFT, SHIFT) * w
    return Pen(img, ox, oy, scale, stretch=float(rng.uniform(0.85, 1.2)))


def shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft diagonal light fall-off across the whole picture (studio lighting)."""
    h, w = img.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5))
    gain = 1.0 + np.float32(rng.uniform(0.0, 0.35)) * ramp
    return np.clip(img.astype(np.float32) * gain[:, :, None], 0, 255).astype(np.uint8)


def render_shop(task: str, index: int, rng: np.random.Generator, *, min_size: int, max_size: int,
                toward: int | None = None) -> np.ndarray:
    """One BGR uint8 image (h, w, 3) of class `index` of `task` in the shop style, from `rng` alone."""
    scene = shop_scene(task, index, toward, rng)
    h, w = shop_size(rng, min_size, max_size)
    img = studio(rng, h, w)
    style = Style.sample(rng)
    pen = shop_pen(img, scene.frame, rng)
    draw_body(pen, style, scene.pose)
    scene.draw(pen, style)
    img = shadow(img, rng)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    noise = rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(2.0, 6.0))
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return cv2.flip(img, 1) if rng.random() < 0.5 else img
