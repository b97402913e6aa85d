"""Stage 6, the Fast R-CNN head: 2fc head, predictor, ROI sampling, losses and post-processing."""

import math

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads as TvRoIHeads

from fpnlab.errors import FpnlabError
from fpnlab.model.boxes import box_iou
from fpnlab.model.poolers import MultiScaleRoIPooler
from fpnlab.model.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from fpnlab.model.transform import ImageBatch


def test_head_and_predictor_shapes():
    head = TwoMLPHead(16 * 7 * 7, representation_size=32)
    predictor = FastRCNNPredictor(32, num_classes=5)
    scores, deltas = predictor(head(torch.rand(6, 16, 7, 7)))
    assert tuple(scores.shape) == (6, 5) and tuple(deltas.shape) == (6, 20)  # class-specific: 4 per class
    assert head(torch.randn(3, 16, 7, 7)).min() >= 0  # ReLU after fc7
    assert TwoMLPHead(16).fc7.out_features == 1024  # the paper's 1024-d "2fc" head by default


def tv_heads(num_classes: int = 4) -> TvRoIHeads:
    return TvRoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 100)


def our_heads(num_classes: int = 4, channels: int = 4) -> RoIHeads:
    return RoIHeads(MultiScaleRoIPooler(), TwoMLPHead(channels * 49, 8), FastRCNNPredictor(8, num_classes))


def random_proposals(n: int, extent: float, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * extent
    return torch.cat([xy, xy + torch.rand(n, 2, generator=gen) * extent / 2 + 1], dim=1)


def canonical(rows: torch.Tensor) -> torch.Tensor:
    """Rows sorted lexicographically (order among exactly equal scores is arbitrary)."""
    return rows[np.lexsort(rows.numpy().T[::-1])]


def test_postprocess_equals_torchvision():
    gen = torch.Generator().manual_seed(0)
    proposals = [random_proposals(300, 300, gen), random_proposals(200, 300, gen)]
    logits, deltas = torch.randn(500, 4, generator=gen) * 2, torch.randn(500, 16, generator=gen)
    sizes = [(320, 400), (300, 416)]
    expected_boxes, expected_scores, expected_labels = tv_heads().postprocess_detections(
        logits, deltas, proposals, sizes
    )
    detections = our_heads().postprocess(logits, deltas, proposals, sizes)
    for ours, boxes, scores, labels in zip(detections, expected_boxes, expected_scores, expected_labels):
        assert len(ours["boxes"]) == len(boxes) == 100  # the per-image cap
        assert (ours["scores"] > 0.05).all() and (ours["labels"] >= 1).all()
        rows = torch.cat([ours["boxes"], ours["scores"][:, None], ours["labels"][:, None].float()], 1)
        expected = torch.cat([boxes, scores[:, None], labels[:, None].float()], 1)
        assert torch.allclose(canonical(rows), canonical(expected), atol=1e-5)
        assert (ours["boxes"][:, 2] <= 416).all() and (ours["boxes"] >= 0).all()  # clipped to the image


def test_roi_sampling_counts_and_equals_torchvision_for_the_same_seed():
    gen = torch.Generator().manual_seed(1)
    gt = torch.tensor([[10.0, 10.0, 90.0, 120.0], [150.0, 40.0, 300.0, 200.0], [30.0, 200.0, 80.0, 260.0]])
    near_gt = gt.repeat(100, 1) + torch.randn(300, 4, generator=gen) * 4  # many positives
    proposals = [torch.cat([random_proposals(900, 300, gen), near_gt.clamp(min=0)]), random_proposals(50, 300, gen)]
    targets = [
        {"boxes": gt, "labels": torch.tensor([1, 3, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    heads = our_heads()
    torch.manual_seed(0)
    rois, labels, regression_targets, positives = heads.sample_proposals(proposals, targets)
    assert [len(r) for r in rois] == [512, 50]  # the second image has only 50 proposals, all background
    first = labels[:512]
    assert (first > 0).sum() == 128 and (first == 0).sum() == 384  # a quarter positive
    assert (labels[512:] == 0).all() and len(regression_targets) == 128
    torch.manual_seed(0)  # torchvision samples the same ROIs from the same random numbers
    tv_rois, tv_matched, tv_labels, tv_targets = tv_heads().select_training_samples(proposals, targets)
    for ours, our_labels, theirs, their_labels in zip(rois, labels.split([512, 50]), tv_rois, tv_labels):
        assert torch.equal(
            canonical(torch.cat([ours, our_labels[:, None].float()], 1)),
            canonical(torch.cat([theirs, their_labels[:, None].float()], 1)),
        )
    positive = tv_labels[0] > 0
    assert torch.allclose(
        canonical(torch.cat([rois[0][first > 0], regression_targets], 1)),
        canonical(torch.cat([tv_rois[0][positive], tv_targets[0][positive]], 1)),
        atol=1e-6,
    )
    # the positives handed to extra heads: the same ROIs, classes and gt boxes as torchvision's mask branch gets
    assert [len(b) for b in positives.boxes] == [128, 0]
    ours = torch.cat([positives.boxes[0], positives.labels[0][:, None], positives.matched[0][:, None]], 1)
    theirs = torch.cat([tv_rois[0][positive], tv_labels[0][positive][:, None], tv_matched[0][positive][:, None]], 1)
    assert torch.equal(canonical(ours.double()), canonical(theirs.double()))


def tiny_heads() -> tuple[RoIHeads, dict[str, torch.Tensor], ImageBatch]:
    """3 classes; the predictor's weights are zero, so every ROI gets logits (0.2, 1.0, -0.5) and deltas 0."""
    heads = our_heads(num_classes=3)
    with torch.no_grad():
        heads.predictor.cls_score.weight.zero_()
        heads.predictor.cls_score.bias.copy_(torch.tensor([0.2, 1.0, -0.5]))
        heads.predictor.bbox_pred.weight.zero_()
        heads.predictor.bbox_pred.bias.zero_()
    features = {f"p{k}": torch.rand(1, 4, 64 // 2**k, 64 // 2**k) for k in range(2, 6)}
    return heads.train(), features, ImageBatch(torch.zeros(1, 3, 64, 64), [(64, 64)])


def smooth_l1(x: float, beta: float = 1.0 / 9) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def test_loss_worked_by_hand():
    heads, features, batch = tiny_heads()
    gt = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([2])}
    # proposal A: IoU 32*32 / (32*40) = 0.8 -> class 2; proposal B: no overlap -> background; the gt box
    # itself is added as a proposal -> class 2. All three are sampled (2 positives <= 128, 1 negative).
    proposals = [torch.tensor([[8.0, 8.0, 40.0, 48.0], [50.0, 50.0, 60.0, 60.0]])]
    _, losses = heads(features, proposals, batch, [gt])
    lse = math.log(math.exp(0.2) + math.exp(1.0) + math.exp(-0.5))
    classifier = (2 * (lse - (-0.5)) + (lse - 0.2)) / 3  # cross-entropy: two of class 2, one background
    # A -> gt: centre y moves -4 on a 40 high box, height shrinks 32/40; weights (10, 10, 5, 5)
    targets_a = [0.0, 10 * -4 / 40, 5 * math.log(1.0), 5 * math.log(32 / 40)]
    box = sum(smooth_l1(t) for t in targets_a) / 3  # the gt proposal's targets are 0; mean over 3 ROIs
    assert losses["loss_classifier"].item() == pytest.approx(classifier, rel=1e-6)
    assert losses["loss_box_reg"].item() == pytest.approx(box, rel=1e-5)


def test_loss_of_one_roi_of_class_1():
    """One sampled ROI, of class 1: the mean is over 1 ROI and class 1's deltas are the ones regressed."""
    heads = our_heads(num_classes=3)
    deltas = torch.zeros(1, 12)
    deltas[0, 4:8] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # class 1's deltas
    losses = heads.loss(torch.zeros(1, 3), deltas, torch.tensor([1]), torch.tensor([[2.0, 0.0, 0.0, 0.0]]))
    assert losses["loss_classifier"].item() == pytest.approx(math.log(3), rel=1e-6)  # uniform over 3 classes
    assert losses["loss_box_reg"].item() == pytest.approx(smooth_l1(0.5 - 2.0), rel=1e-6)


def test_detections_need_a_score_above_the_threshold():
    """torchvision's rule: score > score_thresh (a score equal to it is dropped)."""
    heads = our_heads(num_classes=3)
    boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0]] * 3])  # (1 ROI, 3 classes, 4)
    with heads.settings(score_thresh=0.25):
        found = heads.detect_image(boxes, torch.tensor([[0.25, 0.25, 0.5]]), (64, 64))
    assert found["labels"].tolist() == [2] and found["scores"].tolist() == [0.5]


def test_image_without_objects_trains_as_background():
    heads, features, batch = tiny_heads()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    _, losses = heads(features, [torch.tensor([[8.0, 8.0, 40.0, 48.0], [50.0, 50.0, 60.0, 60.0]])], batch, [empty])
    lse = math.log(math.exp(0.2) + math.exp(1.0) + math.exp(-0.5))
    assert losses["loss_classifier"].item() == pytest.approx(lse - 0.2, rel=1e-6)
    assert losses["loss_box_reg"].item() == 0.0
    sum(losses.values()).backward()
    assert torch.isfinite(heads.predictor.cls_score.bias.grad).all()


def test_eval_forward_returns_detections_per_image():
    heads, features, batch = tiny_heads()
    heads.eval()
    features = {name: f.expand(2, -1, -1, -1) for name, f in features.items()}
    batch = ImageBatch(torch.zeros(2, 3, 64, 64), [(64, 64), (48, 60)])
    proposals = [torch.tensor([[8.0, 8.0, 40.0, 48.0]]), torch.tensor([[0.0, 0.0, 30.0, 20.0], [5.0, 5.0, 9.0, 9.0]])]
    detections, losses = heads(features, proposals, batch)
    assert losses == {}
    # every ROI scores softmax(0.2, 1.0, -0.5) = (0.28, 0.62, 0.10): classes 1 and 2 pass 0.05, deltas are 0
    probs = torch.softmax(torch.tensor([0.2, 1.0, -0.5]), 0)
    assert [len(d["boxes"]) for d in detections] == [2, 4]
    assert torch.allclose(detections[0]["scores"], probs[[1, 2]])
    assert detections[0]["labels"].tolist() == [1, 2]
    assert torch.allclose(detections[0]["boxes"], proposals[0].expand(2, 4))


def test_settings_change_post_processing_inside_the_block_only():
    heads = our_heads()
    with heads.settings(nms_thresh=1.0, detections_per_img=7):
        assert (heads.config.nms_thresh, heads.config.detections_per_img) == (1.0, 7)
    assert (heads.config.nms_thresh, heads.config.detections_per_img) == (0.5, 100)
    with pytest.raises(FpnlabError, match="batch_size"):
        with heads.settings(batch_size=3):
            pass


class RecordingHead(torch.nn.Module):
    """An extra head that records what RoIHeads hands it and adds a loss and a per-detection field."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.seen: dict = {}

    def loss(self, features, positives, targets, batch):
        self.seen.update(positives=positives, targets=targets)
        return {"loss_recorded": self.weight * len(positives.boxes[0])}

    def predict(self, features, detections, batch):
        return [
            {**d, "areas": (d["boxes"][:, 2] - d["boxes"][:, 0]) * (d["boxes"][:, 3] - d["boxes"][:, 1])}
            for d in detections
        ]


def test_an_extra_head_trains_on_the_positives_and_adds_fields_to_the_detections():
    base, features, batch = tiny_heads()
    extra = RecordingHead()
    heads = RoIHeads(base.pooler, base.box_head, base.predictor, base.config, extra_heads={"recorded": extra})
    gt = torch.tensor([[4.0, 4.0, 30.0, 30.0], [36.0, 10.0, 60.0, 40.0]])
    targets = [{"boxes": gt, "labels": torch.tensor([2, 1])}]
    proposals = [torch.tensor([[5.0, 5.0, 30.0, 29.0], [0.0, 40.0, 20.0, 63.0], [37.0, 12.0, 60.0, 41.0]])]
    torch.manual_seed(0)
    _, losses = heads.train()(features, proposals, batch, targets)
    positives = extra.seen["positives"]
    # positives: proposals 0 and 2 (IoU > 0.5 with gt 0 and 1) and the two gt boxes themselves
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_recorded"} and losses["loss_recorded"].item() == 4
    assert torch.equal(
        box_iou(positives.boxes[0], gt[positives.matched[0]]).diagonal() > 0.5, torch.ones(4, dtype=bool)
    )
    assert torch.equal(positives.labels[0], targets[0]["labels"][positives.matched[0]])
    detections, _ = heads.eval()(features, proposals, batch)
    boxes = detections[0]["boxes"]
    assert torch.allclose(detections[0]["areas"], (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert "extra_heads.recorded.weight" in heads.state_dict()
