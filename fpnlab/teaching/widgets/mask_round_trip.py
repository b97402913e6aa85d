"""How much of an object a mask head can keep: its mask through an M x M grid and back (notebook 09).

Sliders pick an object of shapes-mini (small first), the mask resolution M (7, 14, 28, 56) and the object's
scale at the input; the panel shows the true mask, its M x M crop (what Mask R-CNN learns), the mask pasted
back, and the IoU of the round trip (fpnlab.model.masks.crop_and_paste): a perfect head's best.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from torch import Tensor

from fpnlab import plots
from fpnlab.model.masks import crop_and_paste, mask_iou, project_masks
from fpnlab.model.transform import resize_masks
from fpnlab.teaching.mask_lessons import MaskedObject
from fpnlab.teaching.widgets.panel import Panel, slider

RESOLUTIONS = (7, 14, 28, 56)  # 28: Mask R-CNN's


@dataclass
class RoundTrip:
    index: int  # which object
    size: int  # M
    scale: float  # the object's scale at the input, relative to the detector's
    mask: Tensor  # (H, W) its true mask at that scale
    box: Tensor  # (4,) its box
    crop: Tensor  # (M, M) the RoIAlign target in [0, 1]
    back: Tensor  # (H, W) bool the mask pasted back and thresholded
    iou: float
    text: str = ""


class MaskResolutionExplorer:
    """`objects`: fpnlab.teaching.mask_lessons.objects(dataset) (each at the detector's input scale)."""

    def __init__(self, objects: list[MaskedObject]) -> None:
        self.objects = sorted(objects, key=lambda o: float(o.mask.sum()))  # smallest first: index 0 is the hardest

    def update(self, index: int = 0, size: int = 28, scale: float = 1.0, aligned: bool = False) -> RoundTrip:
        """The round trip of object `index` at M = `size`, its image resized by `scale` (nearest neighbour)."""
        obj = self.objects[index]
        height, width = (max(1, round(side * scale)) for side in obj.mask.shape)
        mask = resize_masks(obj.mask[None], (height, width))[0]
        box = obj.box * torch.tensor([width / obj.mask.shape[1], height / obj.mask.shape[0]] * 2)
        crop = project_masks(mask[None].float(), box[None], torch.tensor([0]), size, aligned)[0]  # (M, M)
        back = crop_and_paste(mask[None], box[None], size, aligned)[0]  # (H, W)
        iou = float(mask_iou(back[None], mask[None])[0, 0])
        state = RoundTrip(index, size, scale, mask, box, crop, back, iou)
        side = float((box[2:] - box[:2]).prod().sqrt())
        sampling = "aligned sampling" if aligned else "torchvision's sampling, half a pixel off"
        state.text = (
            f"object {index}: a {obj.category} ({obj.bucket} in COCO's buckets), its box {side:.0f} px on a side "
            f"at this scale, {int(mask.sum())} mask pixels\n"
            f"{size} x {size} crop -> pasted back: IoU {iou:.3f} with the true mask "
            f"({sampling})"
        )
        return state

    def render(self, state: RoundTrip) -> Figure:
        fig = Figure(figsize=(11, 3.4), layout="constrained")
        axes = fig.subplots(1, 3)
        x1, y1, x2, y2 = state.box.tolist()
        pad = max(4.0, 0.3 * max(x2 - x1, y2 - y1))
        view = (int(max(0, x1 - pad)), int(max(0, y1 - pad)), int(x2 + pad) + 1, int(y2 + pad) + 1)
        for ax, picture, title in (
            (axes[0], state.mask, "true mask"),
            (axes[2], state.back, f"pasted back: IoU {state.iou:.2f}"),
        ):
            ax.imshow(picture[view[1] : view[3], view[0] : view[2]].float().numpy(), cmap="gray", vmin=0, vmax=1)
            plots.draw_boxes(ax, (state.box - torch.tensor(view[:2] * 2))[None], color="yellow", linewidth=1.0)
            ax.set_title(title, fontsize=10)
        axes[1].imshow(state.crop.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[1].set_title(f"{state.size} x {state.size} target", fontsize=10)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        return fig

    def widget(self, index: int = 0, size: int = 28) -> Panel:
        controls = {
            "index": slider("object (smallest first)", index, 0, len(self.objects) - 1),
            "size": widgets.Dropdown(options=list(RESOLUTIONS), value=size, description="mask M"),
            "scale": widgets.FloatSlider(
                value=1.0,
                min=0.5,
                max=4.0,
                step=0.5,
                description="input scale",
                continuous_update=False,
                style={"description_width": "initial"},
            ),
            "aligned": widgets.Checkbox(value=False, description="aligned sampling"),
        }
        return Panel(controls, self.update, self.render)
