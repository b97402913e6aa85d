"""Synthetic multi-scale shapes: the lab's default detection dataset, made offline and deterministic by seed.

A feature pyramid pays off when one image holds objects of very different sizes (FPN paper, Sec. 1), so
every image here holds 3-20 shapes whose sizes are spread evenly over the three COCO size buckets:

    small  : area < 32^2       (sqrt(area) from ~8 px)
    medium : 32^2 <= area < 96^2
    large  : area >= 96^2      (box side at most 60% of the image side)

Each object picks a bucket (large a little more often than the others, because large shapes are the ones
that find no room to be placed), then sqrt(area) log-uniformly inside it, so each bucket ends up holding
roughly a third of all objects at image sizes >= 320 px (at smaller sizes some large shapes cannot fit and
land in the medium bucket).

Design
------
* One image is a pure function of (seed, split, index): its random generator is
  `np.random.default_rng((seed, split_code, index))`. Worker processes render images in any order and the
  main process writes the COCO JSON in index order, so the output is byte-identical for any worker count.
* Annotations are *amodal*: `segmentation` is one polygon per object (the whole outline as drawn), and
  `bbox` and `area` are that polygon's bounding box and area (shoelace formula), even where a later object
  covers part of it. Objects are drawn largest first, and a placement that would hide more than 40% of an
  earlier object is rejected, so every annotated object shows at least 60% of itself. Annotations are listed
  in drawing order (back to front).
* A ring is one polygon with a zero-width slit joining its outer and inner outlines, so even-odd filling
  (PIL, pycocotools) leaves the hole empty and the shoelace area excludes it.
* Objects stay recognisable: each object's colour differs in luminance from whatever lies under it, small
  objects are always a solid colour, and edges are anti-aliased (drawn 4x larger, then box-filtered).
* Backgrounds are cluttered on purpose: a colour gradient, low-frequency colour blotches, distractor
  strokes (lines and arcs, never closed shapes) and mild pixel noise. Images are saved as JPEG.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = ("circle", "square", "triangle", "star", "ring", "cross")
SPLITS = ("train", "val")
SIZE_BUCKETS = ((8.0, 32.0), (32.0, 96.0), (96.0, math.inf))  # sqrt(area) ranges of COCO's small/medium/large
BUCKET_WEIGHTS = (0.3, 0.3, 0.4)  # large shapes are the ones that find no room, so they are drawn more often
MAX_SIDE_FRACTION = 0.6  # a box side is at most 60% of the image side
OBJECTS_PER_IMAGE = (3, 20)
MIN_VISIBLE = 0.6  # every object keeps >= 60% of its pixels visible
MAX_ASPECT = 1.5  # shapes are stretched by a width/height factor in [1/1.5, 1.5]
PLACEMENT_TRIES = 30
SUPERSAMPLE = 4  # anti-aliasing: masks are drawn 4x larger, then box-filtered
MIN_CONTRAST = 0.3  # luminance difference between an object and what lies under it
JPEG_QUALITY = 80  # ~17 KB per 320 px image
NOISE_STD = 0.015  # pixel noise, in [0, 1] intensity units

CIRCLE_VERTICES = 32
STAR_INNER_RADIUS = 0.45
RING_INNER_RADIUS = 0.55
CROSS_HALF_WIDTH = 0.33


# --- shapes -------------------------------------------------------------------------------------


def unit_polygon(name: str) -> np.ndarray:
    """Outline of one shape class around the origin with radius ~1: (V, 2) as (x, y), y pointing down."""
    t = np.linspace(0.0, 2.0 * np.pi, CIRCLE_VERTICES, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)  # (32, 2), counter-clockwise on screen
    if name == "circle":
        return circle
    if name == "ring":  # outer loop, slit in, inner loop the other way round (a hole), slit out
        inner = RING_INNER_RADIUS * circle * np.array([1.0, -1.0])
        return np.concatenate([circle, circle[:1], inner, inner[:1]])
    if name == "square":
        return np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    if name in ("triangle", "star"):
        points = 3 if name == "triangle" else 10
        angles = -np.pi / 2 + np.arange(points) * 2 * np.pi / points  # first vertex at the top
        radii = np.ones(points) if name == "triangle" else np.tile([1.0, STAR_INNER_RADIUS], 5)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if name == "cross":
        w = CROSS_HALF_WIDTH
        return np.array(
            [
                [-w, -1],
                [w, -1],
                [w, -w],
                [1, -w],
                [1, w],
                [w, w],
                [w, 1],
                [-w, 1],
                [-w, w],
                [-1, w],
                [-1, -w],
                [-w, -w],
            ],
            dtype=float,
        )
    raise ValueError(f"unknown shape {name!r}; known shapes: {', '.join(CATEGORIES)}")


def polygon_area(poly: np.ndarray) -> float:
    """Area enclosed by a polygon (V, 2), shoelace formula; a loop running the other way subtracts."""
    x, y = poly[:, 0], poly[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


def sample_shape(
    rng: np.random.Generator, image_size: int, max_side: float = MAX_SIDE_FRACTION
) -> tuple[int, np.ndarray]:
    """A random class and outline centred on the origin: (category index, (V, 2) polygon in pixels).

    The box side is at most `max_side` x image_size."""
    category = int(rng.integers(len(CATEGORIES)))
    poly = unit_polygon(CATEGORIES[category])
    stretch = math.sqrt(math.exp(rng.uniform(-math.log(MAX_ASPECT), math.log(MAX_ASPECT))))
    poly = poly * np.array([stretch, 1.0 / stretch])
    angle = rng.uniform(0.0, 2.0 * np.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    poly = poly @ rotation.T
    poly = poly / math.sqrt(polygon_area(poly))  # unit area: scaling by s gives area s^2

    # sqrt(area) log-uniform inside a randomly chosen COCO bucket, capped so the box fits the image.
    low, high = SIZE_BUCKETS[int(rng.choice(len(SIZE_BUCKETS), p=BUCKET_WEIGHTS))]
    extent = float(np.ptp(poly, axis=0).max())  # longest box side at unit area
    high = min(high, max_side * image_size / extent)
    scale = math.exp(rng.uniform(math.log(low), math.log(high))) if low < high else high
    return category, poly * scale


# --- drawing ------------------------------------------------------------------------------------


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Perceived brightness of (..., 3) colours in [0, 1] (ITU-R BT.601 weights)."""
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=rgb.dtype)


def random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """A colour with random hue and saturation/value in the given ranges: (3,) float32 RGB in [0, 1]."""
    h, s, v = rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value)
    rgb = np.array(Image.new("HSV", (1, 1), (int(h * 255), int(s * 255), int(v * 255))).convert("RGB"))
    return rgb.reshape(3).astype(np.float32) / 255.0


def contrasting_colour(rng: np.random.Generator, under: float) -> np.ndarray:
    """A vivid colour whose luminance differs from `under` by >= MIN_CONTRAST (the best of 20 draws otherwise)."""
    best, best_gap = None, -1.0
    for _ in range(20):
        colour = random_colour(rng, saturation=(0.5, 1.0), value=(0.2, 1.0))
        gap = abs(float(luminance(colour)) - under)
        if gap >= MIN_CONTRAST:
            return colour
        if gap > best_gap:
            best, best_gap = colour, gap
    return best


def texture(rng: np.random.Generator, colour: np.ndarray, height: int, width: int, solid: bool) -> np.ndarray:
    """Fill pattern for an object's box: solid, stripes, checks or a gradient. (h, w, 3) float32."""
    style = "solid" if solid else rng.choice(["solid", "stripes", "checks", "gradient"])
    if style == "solid":
        return np.broadcast_to(colour, (height, width, 3))
    # The second colour keeps the first one's side of the contrast: darker if bright, lighter if dark.
    second = colour * 0.55 if luminance(colour) > 0.5 else colour + (1.0 - colour) * 0.45
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)  # (h, w) each
    angle = rng.uniform(0.0, np.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    period = rng.uniform(4.0, max(5.0, min(height, width) / 3.0))
    if style == "stripes":
        weight = (along % period) < period / 2
    elif style == "checks":
        weight = ((xx // period + yy // period) % 2) == 0
    else:
        weight = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    weight = weight.astype(np.float32)[..., None]  # (h, w, 1)
    return colour * (1.0 - weight) + second * weight


def rasterize(poly: np.ndarray, height: int, width: int) -> np.ndarray:
    """Coverage of each pixel by a polygon given in box coordinates: (h, w) float32 in [0, 1].

    Pixel (i, j) spans [j, j+1) x [i, i+1). The polygon is filled (even-odd) on a grid SUPERSAMPLE times
    finer, whose sample points are the sub-pixel centres, then each SUPERSAMPLE^2 block is averaged.
    """
    fine = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    points = poly * SUPERSAMPLE - 0.5
    ImageDraw.Draw(fine).polygon([tuple(p) for p in points.tolist()], fill=255)
    return np.asarray(fine.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered backdrop: gradient + colour blotches + distractor strokes: (S, S, 3) float32 in [0, 1]."""
    muted = dict(saturation=(0.0, 0.4), value=(0.25, 0.85))
    start, end = random_colour(rng, **muted), random_colour(rng, **muted)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (S, S) each
    along = xx * math.cos(angle) + yy * math.sin(angle)
    along = (along - along.min()) / float(np.ptp(along))
    image = start + along[..., None] * (end - start)  # (S, S, 3)

    cells = int(rng.integers(3, 8))  # blotches: a coarse random grid, upsampled smoothly
    coarse = rng.uniform(-0.12, 0.12, size=(3, cells, cells)).astype(np.float32)
    blotches = [np.asarray(Image.fromarray(c, mode="F").resize((size, size), Image.BICUBIC)) for c in coarse]
    image = np.clip(image + np.stack(blotches, axis=-1), 0.0, 1.0)

    canvas = Image.fromarray((image * 255).astype(np.uint8))
    draw_distractors(rng, ImageDraw.Draw(canvas), size)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def draw_distractors(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int) -> None:
    """4-12 strokes that are edges but not objects: poly-lines and open arcs in random colours."""
    for _ in range(int(rng.integers(4, 13))):
        colour = tuple(int(c) for c in (random_colour(rng, (0.0, 1.0), (0.1, 1.0)) * 255))
        width = int(rng.integers(1, max(2, size // 128) + 1))
        if rng.uniform() < 0.5:  # a poly-line of 2-4 points that may leave the image
            points = rng.uniform(-0.1 * size, 1.1 * size, size=(int(rng.integers(2, 5)), 2))
            draw.line([tuple(p) for p in points.tolist()], fill=colour, width=width, joint="curve")
        else:  # an open arc: at most 3/4 of a circle, so it never reads as a ring
            x, y = rng.uniform(0, size, size=2)
            r = rng.uniform(0.05, 0.5) * size
            start = rng.uniform(0, 360)
            draw.arc([x - r, y - r, x + r, y + r], start, start + rng.uniform(30, 270), fill=colour, width=width)


def place(
    rng: np.random.Generator, poly: np.ndarray, owner: np.ndarray, visible: np.ndarray, full: np.ndarray
) -> tuple[np.ndarray, tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Find a position where the shape hides at most 40% of any object already drawn.

    `owner` (S, S) holds the index of the object on top at each pixel (-1: background); `visible` and
    `full` (K,) count each drawn object's uncovered and total pixels. Returns the placed polygon, its box
    as slices, its coverage (h, w) and the pixels it hides of each object (K,), or None after
    PLACEMENT_TRIES misses.
    """
    size = owner.shape[0]
    for _ in range(PLACEMENT_TRIES):
        offset = rng.uniform(0.0, size - np.ptp(poly, axis=0)) - poly.min(axis=0)
        placed = np.round(poly + offset, 1)
        x0, y0 = np.floor(placed.min(axis=0)).astype(int)
        x1, y1 = np.ceil(placed.max(axis=0)).astype(int)
        alpha = rasterize(placed - [x0, y0], y1 - y0, x1 - x0)  # (h, w)
        box = (slice(y0, y1), slice(x0, x1))
        covered = np.bincount(owner[box][alpha >= 0.5] + 1, minlength=len(full) + 1)[1:]  # (K,)
        if np.all(visible - covered >= MIN_VISIBLE * full):
            return placed, box, alpha, covered
    return None


def render_image(
    seed: int, split: str, index: int, size: int, max_side: float = MAX_SIDE_FRACTION
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image and its objects, a pure function of its arguments.

    Returns the image (S, S, 3) uint8 and, in drawing order, one dict per object with `category` (index
    into CATEGORIES) and `polygon` ((V, 2) float64 in image pixels, rounded to 0.1 px).
    """
    rng = np.random.default_rng((seed, SPLITS.index(split), index))
    canvas = background(rng, size)  # (S, S, 3)
    count = int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))
    shapes = [sample_shape(rng, size, max_side) for _ in range(count)]
    shapes.sort(key=lambda shape: -polygon_area(shape[1]))  # largest first: small shapes go on top

    owner = np.full((size, size), -1, dtype=np.int16)  # which object is on top at each pixel
    visible, full = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)  # (K,) pixels per drawn object
    objects: list[dict[str, Any]] = []
    for category, poly in shapes:
        found = place(rng, poly, owner, visible, full)
        if found is None:
            continue  # no room left for this shape
        placed, box, alpha, covered = found
        mask = alpha >= 0.5  # (h, w)
        region = canvas[box]  # (h, w, 3) view
        colour = contrasting_colour(rng, float(luminance(region[mask]).mean()))
        small = polygon_area(placed) < SIZE_BUCKETS[0][1] ** 2
        region += alpha[..., None] * (texture(rng, colour, *mask.shape, solid=small) - region)
        owner[box][mask] = len(objects)
        visible = np.append(visible - covered, mask.sum())
        full = np.append(full, mask.sum())
        objects.append({"category": category, "polygon": placed})

    noisy = canvas + NOISE_STD * rng.standard_normal(canvas.shape, dtype=np.float32)
    return (np.clip(noisy, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), objects


# --- COCO files ---------------------------------------------------------------------------------


def coco_annotation(obj: dict[str, Any]) -> dict[str, Any]:
    """COCO fields of one drawn object (amodal: bbox and area of the whole polygon); ids are added later."""
    poly = obj["polygon"]
    (x0, y0), (x1, y1) = poly.min(axis=0), poly.max(axis=0)
    return {
        "category_id": obj["category"] + 1,
        "bbox": [round(float(x0), 1), round(float(y0), 1), round(float(x1 - x0), 1), round(float(y1 - y0), 1)],
        "area": round(polygon_area(poly), 1),
        "iscrowd": 0,
        "segmentation": [[round(float(v), 1) for v in poly.reshape(-1)]],
    }
