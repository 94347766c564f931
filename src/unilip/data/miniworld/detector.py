"""Recover the scene graph from pixels, with no learning: the scorer of generated and edited images.

1. The background colour is the median of the border pixels.
2. Every pixel is explained as the background blended with one configured colour (the colour whose blend line
   passes nearest to it); pixels more than half covered are foreground. Segmenting on a 3x3 median-filtered copy
   ignores pixel noise; the 50 % rule keeps blurred neighbours apart.
3. Each colour's foreground splits into 8-connected components; blobs too small to be an object are dropped.
4. A component's coverage (raw pixels) is compared with the rendered coverage of every configured (shape, size),
   sharp and blurred, at the component's centre; the best soft IoU names the shape and size.

Because the templates come from the renderer itself, a new shape needs no detector change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from unilip.data.miniworld.config import BACKGROUNDS, PALETTE, MiniWorldConfig
from unilip.data.miniworld.renderer import shape_coverage
from unilip.data.miniworld.scene import Scene, SceneObject

_TEMPLATE_BLURS = (0.8, 1.6)  # pixels at 64 px, scaled with the image size
_MIN_AREA = 0.3  # of the smallest object's pixel area: smaller blobs are noise or fragments


@dataclass(frozen=True)
class Detection:
    obj: SceneObject
    iou: float  # soft IoU of the best template: low values flag a blob that fits no shape well
    area: float  # pixels covered (soft)


def _nearest(color: np.ndarray, names: tuple[str, ...], table: dict[str, tuple[int, int, int]]) -> str:
    dists = [np.linalg.norm(color - np.array(table[n], dtype=np.float32)) for n in names]
    return names[int(np.argmin(dists))]


def detect_objects(image: np.ndarray, cfg: MiniWorldConfig) -> tuple[str, list[Detection]]:
    """The background's name and one :class:`Detection` per object found in an (H, W, 3) uint8 image."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"detect expects a square (H, W, 3) RGB image, got shape {img.shape}")
    size = img.shape[0]
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, axis=0)
    background = _nearest(bg, cfg.backgrounds, BACKGROUNDS)

    # Each pixel is explained as background blended with one palette colour: the colour whose blend line passes
    # nearest to it (anti-aliased and blurred edges lie on that line), with coverage alpha along the line.
    colors = np.array([PALETTE[c] for c in cfg.colors], dtype=np.float32) - bg  # (K, 3)
    smooth = ndimage.median_filter(img, size=(3, 3, 1)) - bg  # ignores pixel noise when segmenting
    coverage = _coverage(smooth, colors)  # (H, W, K)
    residual = np.linalg.norm(smooth[..., None, :] - coverage[..., None] * colors, axis=-1)
    nearest = residual.argmin(axis=-1)  # (H, W)
    foreground = np.take_along_axis(coverage, nearest[..., None], axis=-1)[..., 0] > 0.5

    min_area = _MIN_AREA * 0.5 * (min(cfg.sizes.values()) * size) ** 2
    detections = []
    for k, color in enumerate(cfg.colors):
        labels, n = ndimage.label(foreground & (nearest == k), structure=np.ones((3, 3)))
        for j in range(1, n + 1):
            comp = labels == j
            if comp.sum() < min_area:
                continue
            # Coverage measured on the raw pixels (the median filter rounds off thin parts such as a cross's arms),
            # within the component grown by one pixel (anti-aliased edges sit just outside it).
            alpha = _coverage(img - bg, colors[k : k + 1])[..., 0] * ndimage.binary_dilation(comp, iterations=1)
            detection = _classify(alpha, color, cfg, size)
            if detection is not None:
                detections.append(detection)
    detections.sort(key=lambda d: (d.obj.y, d.obj.x))
    return background, detections


def _coverage(pixels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """(H, W, K) fraction of each colour (relative to the background) in each pixel, clipped to [0, 1]."""
    return np.clip((pixels @ colors.T) / (colors * colors).sum(axis=1), 0.0, 1.0)


def _classify(alpha: np.ndarray, color: str, cfg: MiniWorldConfig, size: int) -> Detection | None:
    """The (shape, size) whose rendered coverage best matches ``alpha``, centred on alpha's bounding box."""
    ys, xs = np.nonzero(alpha > 0.5)
    if len(xs) == 0:
        return None
    cx, cy = (xs.min() + xs.max() + 1) / 2 / size, (ys.min() + ys.max() + 1) / 2 / size
    iou, shape, name = max(
        (_soft_iou(alpha, template), shape, name)
        for shape in cfg.shapes
        for name, frac in cfg.sizes.items()
        for template in _templates(shape, cx, cy, frac, size)
    )
    return Detection(SceneObject(shape, color, name, round(cx, 4), round(cy, 4)), iou, float(alpha.sum()))


def _templates(shape: str, cx: float, cy: float, frac: float, size: int) -> list[np.ndarray]:
    """The shape's coverage, sharp and blurred: decoded and generated images are rarely as sharp as renders."""
    sharp = shape_coverage(shape, cx, cy, frac, size)
    return [sharp] + [ndimage.gaussian_filter(sharp, sigma * size / 64) for sigma in _TEMPLATE_BLURS]


def _soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / max(np.maximum(a, b).sum(), 1e-6))


def detect(image: np.ndarray, cfg: MiniWorldConfig) -> Scene:
    """The scene graph of an (H, W, 3) uint8 image of the mini world."""
    background, detections = detect_objects(image, cfg)
    return Scene(background=background, objects=tuple(d.obj for d in detections))


# --------------------------------------------------------------------------------------------------------------------
# Scoring a detection against the truth


def match_objects(pred: Scene, truth: Scene, pos_tol: float = 0.05) -> int:
    """How many predicted objects equal a true one (shape, colour, size, centre within ``pos_tol``), one-to-one."""
    if not pred.objects or not truth.objects:
        return 0
    p = np.array([[o.x, o.y] for o in pred.objects])
    t = np.array([[o.x, o.y] for o in truth.objects])
    cost = np.linalg.norm(p[:, None] - t[None], axis=2)
    same = np.array([[(a.shape, a.color, a.size) == (b.shape, b.color, b.size) for b in truth.objects] for a in pred.objects])
    cost = np.where(same & (cost <= pos_tol), cost, 1e3)  # forbid wrong matches, then maximise the right ones
    rows, cols = linear_sum_assignment(cost)
    return int(sum(cost[r, c] < 1e3 for r, c in zip(rows, cols)))


def perturb(image: np.ndarray, rng: np.random.Generator, noise_std: float = 0.0, blur_sigma: float = 0.0) -> np.ndarray:
    """Gaussian blur (sigma in pixels) then Gaussian noise (std in 0-255 units): the detector's robustness checks."""
    out = np.asarray(image, dtype=np.float32)
    if blur_sigma > 0:
        out = ndimage.gaussian_filter(out, sigma=(blur_sigma, blur_sigma, 0))
    if noise_std > 0:
        out = out + rng.normal(0.0, noise_std, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def detector_accuracy(
    cfg: MiniWorldConfig, n: int = 500, split: str = "test", noise_std: float = 0.0, blur_sigma: float = 0.0, seed: int = 0
) -> dict[str, float]:
    """Object-level accuracy of :func:`detect` on ``n`` rendered scenes of ``split``.

    ``object_accuracy`` = correct objects / sum over scenes of max(#true, #detected), so missed and spurious objects
    both count as errors; ``scene_exact`` = scenes whose objects are all found with nothing extra;
    ``background_accuracy`` = scenes whose background is named right.
    """
    from unilip.data.miniworld.renderer import render
    from unilip.data.miniworld.scene import sample_split

    rng = np.random.default_rng(seed)
    correct = total = exact = bg_ok = 0
    for scene in sample_split(cfg, split, 0, n):
        image = perturb(render(scene, cfg), rng, noise_std, blur_sigma)
        pred = detect(image, cfg)
        k = match_objects(pred, scene)
        m = max(len(pred.objects), len(scene.objects))
        correct, total = correct + k, total + m
        exact += int(k == m)
        bg_ok += int(pred.background == scene.background)
    return {"object_accuracy": correct / total, "scene_exact": exact / n, "background_accuracy": bg_ok / n, "n_scenes": n}
