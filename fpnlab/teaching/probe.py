"""What one feature cell knows, measured: a linear probe of "object or background" on each map.

A map's mean |activation| shows where the features are strong, not what they mean (zero padding makes a
deep map brightest along the image's border). To see *semantics*, the lab asks a linear classifier to
tell, from one cell's C features alone, whether the cell's centre lies on an object or on the background.
The classifier is fitted on cells of training images and scored on cells of val images; chance is 50%
(as many object cells as background cells are drawn from every image):

    probe = ObjectnessProbe(seed=0)
    train = probe.cells(*feature_maps(model, train_set, 100))       # per map: cells' features (N, C), labels
    accuracy = probe.score(train, probe.cells(*feature_maps(model, val_set, 60)))
    # {"c2": 0.78, ..., "p2": 0.82, ...}: the share of val cells it labels right

A map whose cells carry more of "what is there" (deeper stages, and the FPN's levels, which receive it
from above) is read better by the same linear classifier. Notebooks 01 and 02 use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpnlab.model.detector import FPNDetector
from fpnlab.model.transform import resize_boxes

Cells = dict[str, tuple[Tensor, Tensor]]  # map name -> (features (N, C), labels (N,): 1 object, 0 background)


def cell_centres(height: int, width: int, stride: float) -> tuple[Tensor, Tensor]:
    """(x, y) of every cell's centre of an H x W map with this stride, in input pixels, row by row: (H*W,) each."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return (xs.flatten() + 0.5) * stride, (ys.flatten() + 0.5) * stride


def on_objects(x: Tensor, y: Tensor, boxes: Tensor) -> Tensor:
    """(N,) True where the point (x, y) lies inside any of the boxes (M, 4) xyxy."""
    inside = (x[:, None] >= boxes[:, 0]) & (x[:, None] <= boxes[:, 2])
    return (inside & (y[:, None] >= boxes[:, 1]) & (y[:, None] <= boxes[:, 3])).any(dim=1)


@dataclass
class ObjectnessProbe:
    """A linear probe of "object or background" from one cell's features; see the module docstring."""

    per_image: int = 12  # object cells and background cells drawn from each image (at most)
    l2: float = 1e-3  # weight decay of the classifier
    seed: int = 0

    def cells(self, maps: Sequence[Mapping[str, Tensor]], boxes: Sequence[Tensor], input_side: int) -> Cells:
        """Object and background cells of every map: `maps[i]` holds image i's maps (1, C, H, W) by name,
        `boxes[i]` its objects (M, 4) in the pixels of the network's input (`input_side` wide)."""
        generator = torch.Generator().manual_seed(self.seed)
        found: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
        for image_maps, image_boxes in zip(maps, boxes):
            for name, feature in image_maps.items():
                c, h, w = feature.shape[-3:]
                x, y = cell_centres(h, w, input_side / w)
                inside = on_objects(x, y, image_boxes.cpu())
                chosen = [self._draw(torch.where(flag)[0], generator) for flag in (inside, ~inside)]
                index = torch.cat(chosen)
                features, labels = found.setdefault(name, ([], []))
                features.append(feature.detach().reshape(c, h * w)[:, index].T.cpu().float())  # (n, C)
                labels.append(torch.cat([torch.ones(len(chosen[0])), torch.zeros(len(chosen[1]))]).long())
        return {name: (torch.cat(f), torch.cat(y)) for name, (f, y) in found.items()}

    def _draw(self, indices: Tensor, generator: torch.Generator) -> Tensor:
        return indices[torch.randperm(len(indices), generator=generator)[: self.per_image]]

    def score(self, train: Cells, val: Cells) -> dict[str, float]:
        """Fit one classifier per map on `train` cells; the share of `val` cells it labels right, per map."""
        return {name: float((self.fit(*train[name])(val[name][0]) == val[name][1]).float().mean()) for name in train}

    def fit(self, features: Tensor, labels: Tensor) -> Callable[[Tensor], Tensor]:
        """A logistic regression on standardised features (L-BFGS, deterministic); returns x -> predicted label."""
        mean, std = features.mean(0), features.std(0) + 1e-6
        standard = (features - mean) / std
        torch.manual_seed(self.seed)
        weight = torch.zeros(features.shape[1], 2, requires_grad=True)
        bias = torch.zeros(2, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

        def loss() -> Tensor:
            optimizer.zero_grad()
            value = F.cross_entropy(standard @ weight + bias, labels) + self.l2 * weight.pow(2).sum()
            value.backward()
            return value

        optimizer.step(loss)
        weight, bias = weight.detach(), bias.detach()
        return lambda x: (((x - mean) / std) @ weight + bias).argmax(dim=1)


@torch.no_grad()
def feature_maps(
    model: FPNDetector, dataset: Sequence, count: int, necks: Mapping[str, nn.Module] | None = None
) -> tuple[list[dict[str, Tensor]], list[Tensor], int]:
    """The first `count` images of `dataset` through the model: per image its maps c2..c5 and p2..p5 (and,
    for each extra neck, its levels named "p2 <neck name>", ...), its boxes in the network's input pixels,
    and the input's width: what ObjectnessProbe.cells takes."""
    device = next(model.parameters()).device
    maps, boxes, side = [], [], 0
    for index in range(count):
        image, target = dataset[index]
        seen = model.inspect([image.to(device)])
        found = dict(seen.features)
        for suffix, neck in (necks or {}).items():
            found.update(
                {
                    f"{level} {suffix}": f
                    for level, f in neck({k: seen.features[k] for k in ("c2", "c3", "c4", "c5")}).items()
                }
            )
        maps.append(found)
        boxes.append(resize_boxes(target["boxes"], image.shape[-2:], seen.image_sizes[0]))
        side = seen.images.shape[-1]
    return maps, boxes, side
