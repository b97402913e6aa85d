"""A trained detector on images: the detections scoring at least a threshold (`fpnlab detect`, notebook 07).

image, note = read_image("photo.jpg")                   # fpnlab.data.images: (3, H, W) in [0, 1]
detections = detect(model, image, score_threshold=0.5)  # boxes (N, 4), labels (N,), scores (N,)
found = detect_all(model, images)                       # one such dict per image, batched
save_detections(image, detections, model.categories, Path("boxes.png"))   # fpnlab.plots
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

SCORE_THRESHOLD = 0.5  # keep detections scoring at least this


@torch.inference_mode()
def detect_all(
    model: nn.Module, images: Sequence[Tensor], score_threshold: float = 0.0, batch_size: int = 4
) -> list[dict[str, Tensor]]:
    """Detections of each image (3, H, W) scoring >= score_threshold, on the CPU: boxes (N, 4) xyxy in the
    image's pixels, labels (N,), scores (N,), best first. The model runs in eval mode, `batch_size` images
    at a time, on its own device."""
    model.eval()
    device = next(model.parameters()).device
    found = []
    for start in range(0, len(images), batch_size):
        for out in model([image.to(device) for image in images[start : start + batch_size]]):
            keep = out["scores"] >= score_threshold
            found.append({k: v[keep].cpu() for k, v in out.items()})
    return found


def detect(model: nn.Module, image: Tensor, score_threshold: float = SCORE_THRESHOLD) -> dict[str, Tensor]:
    """Detections on one image (3, H, W) scoring >= score_threshold: boxes (N, 4) xyxy, labels, scores."""
    return detect_all(model, [image], score_threshold)[0]
