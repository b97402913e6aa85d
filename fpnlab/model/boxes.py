"""Box operations (stage 0: every later stage measures, moves and prunes boxes). Boxes are (N, 4) tensors in
(x1, y1, x2, y2) pixel coordinates unless named xywh.

Everything that touches box geometry lives here, once: format conversion, area and IoU, the box
coder that turns boxes into regression targets and back (Faster R-CNN paper, Eq. 2), clipping,
removing tiny boxes and non-maximum suppression (NMS). NMS exists twice: ``nms_reference`` in plain
PyTorch to read, and torchvision's fused kernel to run; ``nms`` picks one via ``fpnlab.switch``.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import Tensor

from fpnlab.errors import FpnlabError
from fpnlab.switch import reference_ops_enabled, value_checks_enabled

# Largest log-scale change the decoder applies: a box grows at most 1000/16 times (Detectron's value).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    """Raise FpnlabError unless ``boxes`` is a finite (N, 4) float tensor with x1 <= x2 and y1 <= y2."""
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise FpnlabError(f"{name} must be an (N, 4) tensor of (x1, y1, x2, y2), got {shape}.")
    if not boxes.is_floating_point():
        raise FpnlabError(f"{name} must be a float tensor, got {boxes.dtype}.")
    if not value_checks_enabled():  # inside the detector, which checked its inputs (fpnlab.switch)
        return
    finite = torch.isfinite(boxes).all(dim=1)  # (N,)
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])  # (N,)
    if (~finite | inverted).any():  # one host-device sync for both checks; the details only on failure
        if not finite.all():
            raise FpnlabError(f"{name} contains NaN or infinite coordinates.")
        raise FpnlabError(f"{name} has {int(inverted.sum())} box(es) with x2 < x1 or y2 < y1.")


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """COCO's (x, y, w, h) -> (x1, y1, x2, y2)."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> COCO's (x, y, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def upcast(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 and small integers -> int64, so areas cannot overflow (a 1000 x 1000 box
    has an area of 1e6, beyond float16's 65504), as torchvision computes them."""
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.long()


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box: (N, 4) -> (N,), in float32 (or wider) for half-precision boxes."""
    # BEGIN UNIT area
    boxes = upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # END UNIT area


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: (N, 4), (M, 4) -> (N, M).

    Both inputs must be valid boxes (x1 <= x2, y1 <= y2); a pair of zero-area boxes gives NaN (0 / 0).
    """
    check_boxes(boxes1, "box_iou: boxes1")
    check_boxes(boxes2, "box_iou: boxes2")
    return _iou(boxes1, boxes2)


def _iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """box_iou without input checks, for callers that validated already: (N, 4), (M, 4) -> (N, M)."""
    # BEGIN UNIT iou
    boxes1, boxes2 = upcast(boxes1), upcast(boxes2)
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)
    # END UNIT iou


class BoxCoder:
    """Boxes <-> regression targets (dx, dy, dw, dh), Faster R-CNN paper Eq. 2, scaled by ``weights``.

        dx = wx * (x_gt - x_a) / w_a      dw = ww * log(w_gt / w_a)
        dy = wy * (y_gt - y_a) / h_a      dh = wh * log(h_gt / h_a)

    (x, y) are box centres, (w, h) widths and heights, ``a`` the anchor or proposal. The RPN uses
    weights (1, 1, 1, 1), the Fast R-CNN head (10, 10, 5, 5). Decoding clamps dw, dh at
    ``bbox_xform_clip`` so exp() cannot overflow. Same arithmetic, in the same order, as torchvision.
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        bbox_xform_clip: float = BBOX_XFORM_CLIP,
    ) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, gt: Tensor, proposals: Tensor) -> Tensor:
        """Targets that move each proposal onto its gt box: (N, 4), (N, 4) -> (N, 4).

        Boxes need positive width and height; a zero-size gt box gives -inf in dw/dh (torchvision
        does the same for background rows whose "gt" is all zeros; only positives reach the loss).
        """
        if gt.shape != proposals.shape or gt.dim() != 2 or gt.shape[1] != 4:
            raise FpnlabError(
                f"BoxCoder.encode needs gt and proposals of the same (N, 4) shape, "
                f"got {tuple(gt.shape)} and {tuple(proposals.shape)}."
            )
        # BEGIN UNIT encode
        wx, wy, ww, wh = self.weights
        a_w, a_h, a_x, a_y = _size_and_centre(proposals)  # each (N,)
        g_w, g_h, g_x, g_y = _size_and_centre(gt)
        dx = wx * (g_x - a_x) / a_w
        dy = wy * (g_y - a_y) / a_h
        dw = ww * torch.log(g_w / a_w)
        dh = wh * torch.log(g_h / a_h)
        return torch.stack([dx, dy, dw, dh], dim=1)  # (N, 4)
        # END UNIT encode

    def decode(self, deltas: Tensor, boxes: Tensor) -> Tensor:
        """Apply deltas to boxes: (N, 4*K), (N, 4) -> (N, 4*K), one decoded box per group of 4 deltas.

        K = 1 for the RPN; K = number of classes for the Fast R-CNN head (reshape to (N, K, 4)).
        """
        if deltas.dim() != 2 or deltas.shape[1] % 4 or boxes.shape != (deltas.shape[0], 4):
            raise FpnlabError(
                f"BoxCoder.decode needs deltas (N, 4*K) and boxes (N, 4), "
                f"got {tuple(deltas.shape)} and {tuple(boxes.shape)}."
            )
        # BEGIN UNIT decode
        boxes = boxes.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        w, h, x, y = (t[:, None] for t in _size_and_centre(boxes))  # each (N, 1)
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy  # each (N, K)
        dw = (deltas[:, 2::4] / ww).clamp(max=self.bbox_xform_clip)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.bbox_xform_clip)
        centre_x, centre_y = dx * w + x, dy * h + y
        half_w, half_h = 0.5 * (torch.exp(dw) * w), 0.5 * (torch.exp(dh) * h)
        decoded = torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=2)
        return decoded.flatten(1)  # (N, K, 4) -> (N, 4*K)
        # END UNIT decode


def _size_and_centre(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(N, 4) boxes -> widths, heights, centre x, centre y, each (N,)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return w, h, boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h


def clip_boxes_to_image(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clamp x to [0, width] and y to [0, height]: (..., 4) -> (..., 4). ``image_size`` is (height, width)."""
    height, width = image_size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x, y], dim=-1).reshape(boxes.shape)  # x1, y1, x2, y2 interleaved again


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both at least ``min_size``: (N, 4) -> (K,)."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first.

    Runs torchvision's kernel, or ``nms_reference`` under ``fpnlab.switch.use_reference_ops()``.
    """
    _check_nms_inputs(boxes, scores)
    return _nms(boxes, scores, iou_threshold)


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """nms without input checks (for callers that checked already): the kernel or the reference."""
    if reference_ops_enabled():
        return _nms_reference(boxes, scores, iou_threshold)
    return torchvision.ops.nms(boxes, scores, iou_threshold)


def nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS in plain PyTorch; keeps exactly the indices torchvision's kernel keeps.

    Visit boxes from the highest score down (a *stable* sort, so equal scores keep input order, as
    in torchvision); keep a box unless an already kept box overlaps it with IoU > iou_threshold.
    """
    _check_nms_inputs(boxes, scores)
    return _nms_reference(boxes, scores, iou_threshold)


def _nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    # BEGIN UNIT nms
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    boxes = boxes[order]
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        overlaps = _iou(boxes[i : i + 1], boxes[i + 1 :])[0]  # (N - i - 1,)
        # Compare in float64 like the kernel: float32 IoU 60/200 is 0.30000001, which is > 0.3.
        suppressed[i + 1 :] |= overlaps.double() > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]
    # END UNIT nms


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group (class or pyramid level) only: indices kept, highest score first.

    The offset trick: shift every group's boxes by group * (max coordinate + 1) so boxes of
    different groups never overlap, then run one ``nms`` (so the switch applies here too).
    On the CPU with many boxes, one NMS per group is cheaper (NMS costs ~N^2), as in torchvision.
    """
    _check_nms_inputs(boxes, scores)
    if groups.shape != scores.shape:
        raise FpnlabError(f"batched_nms: groups must have shape {tuple(scores.shape)}, got {tuple(groups.shape)}.")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    if boxes.device.type == "cpu" and len(boxes) > 1000:
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)  # (N,)
        for group in torch.unique(groups):
            members = torch.where(groups == group)[0]
            keep_mask[members[_nms(boxes[members], scores[members], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True, stable=True)[1]]
    offsets = groups.to(boxes) * (boxes.max() + 1)  # (N,)
    return _nms(boxes + offsets[:, None], scores, iou_threshold)  # checked above: not twice


def _check_nms_inputs(boxes: Tensor, scores: Tensor) -> None:
    check_boxes(boxes, "nms: boxes")
    if scores.shape != (len(boxes),):
        raise FpnlabError(f"nms: scores must have shape ({len(boxes)},), got {tuple(scores.shape)}.")
    if value_checks_enabled() and torch.isnan(scores).any():
        raise FpnlabError("nms: scores contain NaN.")
