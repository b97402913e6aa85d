"""Stage 4, the RPN: shared head, anchor-ordered outputs, proposal selection and losses."""

import math

import numpy as np
import pytest
import torch
from torchvision.models.detection import rpn as tv_rpn
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from fpnlab.errors import FpnlabError
from fpnlab.model.anchors import AnchorGenerator
from fpnlab.model.config import ProposalCounts, RPNConfig
from fpnlab.model.rpn import RegionProposalNetwork, RPNHead, flatten_deltas, flatten_objectness
from fpnlab.model.transform import ImageBatch

SIZES = ((32,), (64,), (128,), (256,), (512,))
RATIOS = (0.5, 1.0, 2.0)


def test_one_head_for_every_level_and_its_shapes():
    head = RPNHead(in_channels=8, num_anchors=3)
    features = [torch.rand(2, 8, 40, 52), torch.rand(2, 8, 20, 26), torch.rand(2, 8, 5, 7)]
    objectness, deltas = head(features)
    assert [tuple(o.shape) for o in objectness] == [(2, 3, 40, 52), (2, 3, 20, 26), (2, 3, 5, 7)]
    assert [tuple(d.shape) for d in deltas] == [(2, 12, 40, 52), (2, 12, 20, 26), (2, 12, 5, 7)]
    # shared weights: one conv, one objectness and one delta layer, whatever the number of levels
    assert sum(p.numel() for p in head.parameters()) == (8 * 8 * 9 + 8) + (8 * 3 + 3) + (8 * 12 + 12)


def test_flattening_follows_the_anchor_order():
    # value = 100 * row + 10 * column + anchor: flattened it must run location by location, anchors inside
    rows, cols, anchors = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(3), indexing="ij")
    code = (100 * rows + 10 * cols + anchors).float()  # (H, W, A)
    logits = code.permute(2, 0, 1)[None]  # (1, A, H, W)
    assert flatten_objectness(logits)[0].tolist() == sorted(code.flatten().tolist())
    deltas = torch.stack([code + k / 10 for k in range(4)], dim=-1)  # (H, W, A, 4): delta k of each anchor
    packed = deltas.permute(2, 3, 0, 1).reshape(1, 12, 2, 3)  # (1, A * 4, H, W), anchor-major like the conv output
    assert torch.equal(flatten_deltas(packed)[0], deltas.reshape(-1, 4))


def test_filter_keeps_levels_apart_clips_and_drops_tiny_boxes():
    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(4, 3), RPNConfig(nms_thresh=0.7))
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [-5.0, -5.0, 50.0, 50.0],
            [3.0, 3.0, 3.0005, 9.0],
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95])
    levels = torch.tensor([0, 1, 0, 2, 0])
    kept, kept_scores, kept_levels = rpn.filter_image(boxes, scores, levels, (20, 30), top_n=10)
    # box 2 is suppressed by box 0 (same level, IoU 1); box 1 survives on its own level; box 4 is too thin
    assert kept.tolist() == [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 30.0, 20.0]]
    assert kept_scores.tolist() == pytest.approx([0.9, 0.8, 0.6]) and kept_levels.tolist() == [0, 1, 2]
    assert len(rpn.filter_image(boxes, scores, levels, (20, 30), top_n=2)[0]) == 2
    # score_thresh is inclusive for proposals (torchvision's RPN keeps scores >= it)
    with rpn.settings(score_thresh=0.8):
        assert rpn.filter_image(boxes, scores, levels, (20, 30), top_n=10)[1].tolist() == pytest.approx([0.9, 0.8])


def test_head_starts_like_faster_rcnn():
    """Weights drawn from N(0, 0.01^2), biases zero (Faster R-CNN, Sec. 3.1.3)."""
    torch.manual_seed(0)
    head = RPNHead(64, 3)
    for conv in (head.conv, head.objectness, head.deltas):
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert torch.count_nonzero(conv.bias) == 0


def tv_and_our_rpns(channels: int = 16):
    torch.manual_seed(0)
    tv_head = tv_rpn.RPNHead(channels, 3)
    for conv in (tv_head.conv[0][0], tv_head.cls_logits, tv_head.bbox_pred):
        torch.nn.init.normal_(conv.weight, std=0.1)
        torch.nn.init.normal_(conv.bias, std=0.1)
    theirs = tv_rpn.RegionProposalNetwork(
        TvAnchorGenerator(SIZES, (RATIOS,) * 5),
        tv_head,
        0.7,
        0.3,
        256,
        0.5,
        dict(training=2000, testing=1000),
        dict(training=2000, testing=1000),
        0.7,
    )
    ours = RegionProposalNetwork(AnchorGenerator(SIZES, RATIOS), RPNHead(channels, 3))
    ours.head.conv.load_state_dict(tv_head.conv[0][0].state_dict())
    ours.head.objectness.load_state_dict(tv_head.cls_logits.state_dict())
    ours.head.deltas.load_state_dict(tv_head.bbox_pred.state_dict())
    return theirs, ours


def canonical(boxes: torch.Tensor) -> torch.Tensor:
    """Rows sorted lexicographically: proposals with exactly equal scores may come in either order."""
    return boxes[np.lexsort(boxes.numpy().T[::-1])]


@pytest.mark.parametrize("training", [False, True])
def test_proposals_and_losses_equal_torchvision(training):
    theirs, ours = tv_and_our_rpns()
    theirs.train(training), ours.train(training)
    gen = torch.Generator().manual_seed(1)
    sizes = [(80, 104), (40, 52), (20, 26), (10, 13), (5, 7)]  # a padded 320 x 416 batch, strides 4..64
    features = {f"p{k + 2}": torch.randn(2, 16, h, w, generator=gen) for k, (h, w) in enumerate(sizes)}
    tensor, image_sizes = torch.zeros(2, 3, 320, 416), [(320, 400), (300, 416)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 100.0, 90.0], [200.0, 50.0, 390.0, 300.0]])},
        {"boxes": torch.zeros(0, 4)},
    ]  # the second image has no objects
    torch.manual_seed(7)
    expected_boxes, expected_losses = theirs(
        ImageList(tensor, image_sizes), dict(features), targets if training else None
    )
    torch.manual_seed(7)  # our sampler draws in torchvision's order, so the same anchors are sampled
    out = ours(features, ImageBatch(tensor, image_sizes), targets if training else None)
    for boxes, scores, expected in zip(out.boxes, out.scores, expected_boxes):
        assert len(boxes) == len(expected) == (2000 if training else 1000)
        assert torch.allclose(canonical(boxes), canonical(expected), atol=1e-4)
        assert (scores[:-1] >= scores[1:]).all()  # best first
    assert [tuple(o.shape) for o in out.objectness] == [(2, 3, h, w) for h, w in sizes]
    assert [len(a) for a in out.anchors] == [h * w * 3 for h, w in sizes]
    for boxes, levels in zip(out.boxes, out.levels):  # each proposal's level, coarse anchors on coarse levels
        assert levels.shape == (len(boxes),) and set(levels.tolist()) <= set(range(5))
    assert set(out.losses) == ({"loss_objectness", "loss_rpn_box_reg"} if training else set())
    for name, value in out.losses.items():
        assert torch.allclose(value, expected_losses[name], atol=1e-6), name


def tiny_rpn() -> RegionProposalNetwork:
    """One 1 x 1 feature map of a 32 x 32 image with two anchors: [-8, -8, 8, 8] and [-16, -16, 16, 16].

    The head's weights are zero, so its outputs are its biases: logits (0.5, -1.0), deltas all 0.
    """
    rpn = RegionProposalNetwork(AnchorGenerator(sizes=((16, 32),), aspect_ratios=(1.0,)), RPNHead(4, 2))
    for conv in (rpn.head.conv, rpn.head.objectness, rpn.head.deltas):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    with torch.no_grad():
        rpn.head.objectness.bias.copy_(torch.tensor([0.5, -1.0]))
    return rpn.train()


def run_tiny(rpn: RegionProposalNetwork, gt: torch.Tensor):
    batch = ImageBatch(torch.zeros(1, 3, 32, 32), [(32, 32)])
    return rpn({"p5": torch.rand(1, 4, 1, 1)}, batch, [{"boxes": gt}])


def smooth_l1(x: float, beta: float = 1.0 / 9) -> float:  # Detectron's beta, written out
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_a_single_sampled_anchor_is_averaged_over_one():
    # gt [-16, -16, 16, 16] is anchor 1 exactly (positive), anchor 0 has IoU 0.25 < 0.3 (negative); a
    # mini-batch of one anchor, all positive, samples anchor 1 alone: the loss is divided by 1, not 2
    rpn = tiny_rpn()
    rpn.sampler.batch_size_per_image, rpn.sampler.positive_fraction = 1, 1.0
    out = run_tiny(rpn, torch.tensor([[-16.0, -16.0, 16.0, 16.0]]))
    assert out.losses["loss_objectness"].item() == pytest.approx(softplus(1.0), rel=1e-6)  # BCE(-1.0, 1) / 1


def test_loss_worked_by_hand():
    rpn = tiny_rpn()
    assert torch.equal(
        rpn.anchor_generator.grid_anchors((32, 32), [(1, 1)])[0],
        torch.tensor([[-8.0, -8.0, 8.0, 8.0], [-16.0, -16.0, 16.0, 16.0]]),
    )
    # gt [0, 0, 16, 16]: IoU 64 / 448 = 0.14 with anchor 0, 256 / 1024 = 0.25 with anchor 1. Both are
    # below 0.3, but anchor 1 is the gt's best anchor (low-quality match): labels (0, 1), both sampled.
    out = run_tiny(rpn, torch.tensor([[0.0, 0.0, 16.0, 16.0]]))
    objectness = (softplus(0.5) + softplus(1.0)) / 2  # BCE(0.5, label 0), BCE(-1.0, label 1), mean of 2
    # anchor 1 -> gt: centre moves (8, 8) on a 32-pixel anchor, size halves: targets (0.25, 0.25, ln .5, ln .5)
    targets = [0.25, 0.25, math.log(0.5), math.log(0.5)]
    box = sum(smooth_l1(0.0 - t) for t in targets) / 2  # predicted deltas are 0; divided by the 2 sampled
    assert out.losses["loss_objectness"].item() == pytest.approx(objectness, rel=1e-6)
    assert out.losses["loss_rpn_box_reg"].item() == pytest.approx(box, rel=1e-6)


def test_image_without_objects_trains_as_background():
    out = run_tiny(tiny_rpn(), torch.zeros(0, 4))
    assert out.losses["loss_objectness"].item() == pytest.approx((softplus(0.5) + softplus(-1.0)) / 2, rel=1e-6)
    assert out.losses["loss_rpn_box_reg"].item() == 0.0
    (out.losses["loss_objectness"] + out.losses["loss_rpn_box_reg"]).backward()  # no NaN from the empty terms


def test_proposals_carry_no_gradient_but_losses_do():
    rpn = tiny_rpn()
    out = run_tiny(rpn, torch.tensor([[0.0, 0.0, 16.0, 16.0]]))
    assert not out.boxes[0].requires_grad
    (out.losses["loss_objectness"] + out.losses["loss_rpn_box_reg"]).backward()
    assert rpn.head.objectness.bias.grad is not None
    # d BCE / d logit = sigmoid(logit) - label, halved by the mean over 2 anchors
    expected = torch.tensor([torch.sigmoid(torch.tensor(0.5)) - 0, torch.sigmoid(torch.tensor(-1.0)) - 1]) / 2
    assert torch.allclose(rpn.head.objectness.bias.grad, expected, atol=1e-6)


def test_settings_change_proposal_selection_inside_the_block_only():
    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(4, 3))
    with rpn.settings(nms_thresh=1.0, test=ProposalCounts(1000, 10**6)):
        assert rpn.config.nms_thresh == 1.0 and rpn.config.counts(training=False).post_nms_top_n == 10**6
        assert rpn.config.counts(training=True) == ProposalCounts(2000, 2000)
    assert rpn.config == RPNConfig()
    with pytest.raises(FpnlabError, match="RegionProposalNetwork.settings takes train, test, nms_thresh"):
        with rpn.settings(fg_iou_thresh=0.5):  # read once, by the Matcher: not a setting to swap
            pass


def test_a_float64_rpn_keeps_float64_throughout():
    rpn = tiny_rpn().double().eval()
    batch = ImageBatch(torch.zeros(1, 3, 32, 32, dtype=torch.float64), [(32, 32)])
    out = rpn({"p5": torch.rand(1, 4, 1, 1, dtype=torch.float64)}, batch)
    assert out.anchors[0].dtype == out.boxes[0].dtype == out.scores[0].dtype == torch.float64
