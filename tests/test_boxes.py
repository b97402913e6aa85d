"""Stage 0: box ops, checked by hand-worked answers and against torchvision."""

import math

import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder as TvBoxCoder

from fpnlab.errors import FpnlabError
from fpnlab.model.boxes import (
    BoxCoder,
    batched_nms,
    box_area,
    box_iou,
    check_boxes,
    clip_boxes_to_image,
    nms,
    nms_reference,
    remove_small_boxes,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from fpnlab.switch import (
    reference_ops_enabled,
    set_reference_ops,
    skip_value_checks,
    use_reference_ops,
    value_checks_enabled,
)


def random_boxes(n: int, gen: torch.Generator, extent: float = 200.0, max_side: float = 80.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * extent
    wh = torch.rand(n, 2, generator=gen) * max_side + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def test_format_conversion_and_area_known_answers():
    xywh = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[10.0, 20.0, 40.0, 60.0]]
    assert xyxy_to_xywh(xyxy).tolist() == xywh.tolist()
    assert box_area(xyxy).tolist() == [1200.0]
    batch = torch.tensor([[10.0, 20.0, 30.0, 40.0]]).expand(2, 3, 4)  # any leading dimensions
    assert xywh_to_xyxy(batch).tolist() == [[[10.0, 20.0, 40.0, 60.0]] * 3] * 2
    assert xyxy_to_xywh(xywh_to_xyxy(batch)).tolist() == batch.tolist()


def test_areas_keep_wide_dtypes():
    boxes = torch.tensor([[0.1, 0.2, 1e8 + 0.3, 1.7]], dtype=torch.float64)
    assert box_area(boxes).dtype == torch.float64 and box_area(boxes).item() == (1e8 + 0.2) * 1.5
    assert box_area(torch.tensor([[0, 0, 3, 4]], dtype=torch.int32)).dtype == torch.int32


def test_box_iou_known_answer_and_torchvision():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    # overlap 5 x 10 = 50, union 100 + 100 - 50 = 150
    assert torch.allclose(box_iou(a, b), torch.tensor([[50 / 150, 0.0, 1.0]]))
    gen = torch.Generator().manual_seed(0)
    x, y = random_boxes(50, gen), random_boxes(70, gen)
    assert torch.equal(box_iou(x, y), torchvision.ops.box_iou(x, y))


def test_box_iou_empty_gt_gives_empty_matrix():
    assert box_iou(torch.zeros(0, 4), torch.ones(3, 4).cumsum(1)).shape == (0, 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([[10.0, 0.0, 5.0, 10.0]]), "x2 < x1"),
        (torch.tensor([[0.0, 0.0, 5.0, float("nan")]]), "NaN"),
        (torch.zeros(3, 5), r"\(N, 4\)"),
        (torch.zeros(3, 4, dtype=torch.int64), "float"),
    ],
)
def test_box_ops_reject_invalid_boxes(bad, message):
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(FpnlabError, match=message):
        box_iou(bad, good)
    with pytest.raises(FpnlabError, match=message):
        nms(bad, torch.ones(len(bad)), 0.5)


def test_errors_name_the_function_and_argument_and_show_what_came():
    good, inverted = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[10.0, 0.0, 5.0, 10.0]])
    cases = [
        (lambda: box_iou(inverted, good), r"^box_iou: boxes1 has 1 box\(es\) with x2 < x1"),
        (lambda: box_iou(good, inverted), r"^box_iou: boxes2 has 1 box\(es\) with x2 < x1"),
        (lambda: nms(inverted, torch.ones(1), 0.5), r"^nms: boxes has 1 box"),
        (lambda: check_boxes(torch.zeros(3, 5)), r"^boxes must be an \(N, 4\) tensor .*, got \(3, 5\)\.$"),
        (lambda: check_boxes(torch.zeros(4)), r"got \(4,\)\.$"),
        (lambda: check_boxes([[0, 0, 1, 1]], "gt"), r"^gt must be an \(N, 4\) tensor .*, got list\.$"),
    ]
    for call, message in cases:
        with pytest.raises(FpnlabError, match=message):
            call()


def test_nms_rejects_mismatched_scores_and_nan_scores():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    with pytest.raises(FpnlabError, match="scores"):
        nms(boxes, torch.ones(3), 0.5)
    with pytest.raises(FpnlabError, match=r"^nms: scores contain NaN\.$"):
        nms(boxes, torch.tensor([0.5, float("nan")]), 0.5)


def test_box_coder_known_answer():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    gt = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), size 20 x 20
    deltas = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode(gt, anchor)
    expected = [10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]
    assert torch.allclose(deltas, torch.tensor([expected]))
    assert torch.allclose(BoxCoder((10.0, 10.0, 5.0, 5.0)).decode(deltas, anchor), gt)
    # boxes follow the deltas' dtype (the head's output), whatever the anchors' dtype
    assert BoxCoder().decode(deltas, anchor.double()).dtype == torch.float32


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_equals_torchvision(weights):
    gen = torch.Generator().manual_seed(1)
    gt, proposals = random_boxes(300, gen), random_boxes(300, gen)
    ours, theirs = BoxCoder(weights), TvBoxCoder(weights)
    assert torch.equal(ours.encode(gt, proposals), theirs.encode_single(gt, proposals))
    deltas = torch.randn(300, 4 * 3, generator=gen) * 3  # 3 classes, some dw/dh beyond the clip
    assert torch.equal(ours.decode(deltas, proposals), theirs.decode_single(deltas, proposals))


def test_box_coder_clamps_log_scale():
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    decoded = BoxCoder().decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), box)
    side = decoded[0, 2] - decoded[0, 0]
    assert side.item() == pytest.approx(1000.0, rel=1e-5)  # 16 * exp(log(1000 / 16))


def test_box_coder_rejects_shape_mismatch():
    with pytest.raises(FpnlabError, match="encode"):
        BoxCoder().encode(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(FpnlabError, match="encode"):
        BoxCoder().encode(torch.zeros(3, 5), torch.zeros(3, 5))
    with pytest.raises(FpnlabError, match="decode"):
        BoxCoder().decode(torch.zeros(2, 6), torch.zeros(2, 4))


def test_clip_and_remove_small_boxes():
    boxes = torch.tensor([[-5.0, -5.0, 50.0, 30.0], [10.0, 10.0, 10.5, 20.0], [90.0, 5.0, 120.0, 70.0]])
    clipped = clip_boxes_to_image(boxes, (60, 100))  # (height, width)
    assert clipped.tolist() == [[0.0, 0.0, 50.0, 30.0], [10.0, 10.0, 10.5, 20.0], [90.0, 5.0, 100.0, 60.0]]
    assert torch.equal(clipped, torchvision.ops.clip_boxes_to_image(boxes, (60, 100)))
    assert remove_small_boxes(clipped, 1.0).tolist() == [0, 2]
    # a tall and a wide box, neither at the origin: width 5 x height 20, width 20 x height 4
    tall_wide = torch.tensor([[3.0, 10.0, 8.0, 30.0], [10.0, 7.0, 30.0, 11.0]])
    assert remove_small_boxes(tall_wide, 4.0).tolist() == [0, 1]  # a side equal to min_size is kept
    assert remove_small_boxes(tall_wide, 5.0).tolist() == [0]
    assert remove_small_boxes(tall_wide, 5.5).tolist() == []
    batched = clip_boxes_to_image(boxes.repeat(2, 1, 1), (60, 100))  # (2, 3, 4) also works
    assert torch.equal(batched[1], clipped)


def test_nms_known_answer():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.8, 0.9, 0.3])
    # box 1 wins, box 0 overlaps it with IoU 90 / 110 = 0.82 and goes; box 2 overlaps nothing
    for fn in (nms, nms_reference):
        assert fn(boxes, scores, 0.5).tolist() == [1, 2]
        assert fn(boxes, scores, 0.85).tolist() == [1, 0, 2]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_reference_equals_torchvision_with_ties(threshold):
    gen = torch.Generator().manual_seed(2)
    for trial in range(40):
        boxes = random_boxes(int(torch.randint(1, 400, (1,), generator=gen)), gen)
        if trial % 2:
            boxes = boxes.round()  # integer boxes: IoU lands exactly on thresholds like 60 / 200 = 0.3
        if trial % 3:  # only 5 distinct scores: many ties
            scores = torch.randint(0, 5, (len(boxes),), generator=gen).float()
        else:
            scores = torch.rand(len(boxes), generator=gen)
        expected = torchvision.ops.nms(boxes, scores, threshold)
        assert torch.equal(nms_reference(boxes, scores, threshold), expected), trial


def test_nms_ties_keep_input_order():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.5, 0.5, 0.5])
    assert nms_reference(boxes, scores, 0.5).tolist() == [0, 2] == torchvision.ops.nms(boxes, scores, 0.5).tolist()


def test_nms_empty():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    assert nms_reference(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).shape == (0,)


def test_switch_routes_nms_and_restores():
    assert not reference_ops_enabled()
    with use_reference_ops():
        assert reference_ops_enabled()
        with use_reference_ops(False):
            assert not reference_ops_enabled()
        assert reference_ops_enabled()
    assert not reference_ops_enabled()
    set_reference_ops(True)
    try:
        assert reference_ops_enabled()
    finally:
        set_reference_ops(False)


def test_nms_dispatch_uses_reference_under_switch(monkeypatch):
    def broken_kernel(*args):
        raise AssertionError("kernel called")

    monkeypatch.setattr(torchvision.ops, "nms", broken_kernel)
    boxes, scores = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0])
    with use_reference_ops():
        assert nms(boxes, scores, 0.5).tolist() == [0]
    with pytest.raises(AssertionError, match="kernel called"):
        nms(boxes, scores, 0.5)


def test_batched_nms_suppresses_only_within_groups():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    groups = torch.tensor([0, 1, 0])
    assert batched_nms(boxes, scores, groups, 0.5).tolist() == [0, 1]
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).dtype == torch.long
    # threshold 0 suppresses any overlap at all: groups must not touch even at their extreme corners
    big = torch.tensor([[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 100.0, 100.0]])
    assert batched_nms(big, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.0).tolist() == [0, 1]


@pytest.mark.parametrize("n", [600, 1200])  # 1200: the per-group CPU branch
def test_batched_nms_orders_tied_scores_by_index(n):
    """Disjoint boxes (nothing suppressed) with two score values: highest first, ties in input order."""
    i = torch.arange(n, dtype=torch.float32)
    x, y = 20 * (i % 40), 20 * (i // 40)
    boxes = torch.stack([x, y, x + 10, y + 10], dim=1)
    gen = torch.Generator().manual_seed(0)
    scores = torch.where(torch.rand(n, generator=gen) < 0.5, 0.5, 0.7)
    groups = torch.randint(0, 3, (n,), generator=gen)
    expected = sorted(range(n), key=lambda k: (-scores[k].item(), k))
    assert batched_nms(boxes, scores, groups, 0.5).tolist() == expected


@pytest.mark.parametrize("n", [600, 2500])  # 2500: the per-group CPU branch
@pytest.mark.parametrize("reference", [False, True])
def test_batched_nms_equals_torchvision(reference, n):
    gen = torch.Generator().manual_seed(3)
    boxes = random_boxes(n, gen, extent=300.0)
    scores = torch.rand(n, generator=gen)
    groups = torch.randint(0, 5, (n,), generator=gen)
    with use_reference_ops(reference):
        ours = batched_nms(boxes, scores, groups, 0.5)
    assert torch.equal(ours, torchvision.ops.batched_nms(boxes, scores, groups, 0.5))
    with pytest.raises(FpnlabError, match="groups"):
        batched_nms(boxes, scores, groups[:10], 0.5)


def test_value_checks_can_be_skipped_but_shape_checks_stay():
    inverted = torch.tensor([[10.0, 0.0, 5.0, 10.0]])
    with skip_value_checks():
        assert not value_checks_enabled()
        assert box_iou(inverted, inverted).shape == (1, 1)  # values not read: no host-device sync
        with pytest.raises(FpnlabError, match=r"\(N, 4\)"):
            box_iou(torch.zeros(3, 5), inverted)
    assert value_checks_enabled()
    with pytest.raises(FpnlabError, match="x2 < x1"):
        box_iou(inverted, inverted)


def test_detector_checks_its_inputs_once_then_skips_box_value_checks(monkeypatch):
    import fpnlab.model.boxes
    from fpnlab.engine.presets import get_preset
    from fpnlab.model.detector import build_detector

    seen = []
    real = fpnlab.model.boxes.check_boxes
    monkeypatch.setattr(fpnlab.model.boxes, "check_boxes", lambda *a: seen.append(value_checks_enabled()) or real(*a))
    torch.manual_seed(0)
    model = build_detector(get_preset("test").model, num_classes=3).eval()
    with torch.no_grad():
        model([torch.rand(3, 64, 64)])
    assert seen and not any(seen)  # every box check inside the forward pass skipped the values
    assert value_checks_enabled()  # and the switch is back on afterwards


def test_half_precision_boxes_do_not_overflow():
    """Areas of ~1e6 pixels overflow float16 (max 65504); they are computed in float32, as torchvision does."""
    boxes = torch.tensor([[0, 0, 1000, 1000], [10, 10, 1010, 1010], [2000, 2000, 2500, 2500]], dtype=torch.float16)
    scores = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float16)
    assert box_area(boxes).tolist() == [1e6, 1e6, 250000.0]
    iou = box_iou(boxes, boxes)
    assert iou.dtype == torch.float32 and torch.isfinite(iou).all()
    assert iou[0, 1].item() == pytest.approx(990 * 990 / (2e6 - 990 * 990), rel=1e-6)  # computed by hand
    assert nms_reference(boxes, scores, 0.5).tolist() == [0, 2]  # box 1 (IoU 0.96 with box 0) suppressed
    assert box_area(torch.tensor([[0, 0, 100, 120]], dtype=torch.int8)).tolist() == [12000]  # no int8 wrap-around
