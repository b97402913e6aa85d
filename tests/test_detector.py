"""The whole detector (stages 1-6 assembled): config, variants, bad input, training, and equality with torchvision."""

import copy
import dataclasses
import json
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from fpnlab.errors import DataError, FpnlabError
from fpnlab.model.config import DetectorConfig, ProposalCounts
from fpnlab.model.detector import FPNDetector, build_detector
from fpnlab.model.torchvision_port import from_torchvision
from fpnlab.switch import use_reference_ops

# --- small from-scratch detectors (what the TRAIN engineer builds) -------------------------------------------

TINY = dict(
    num_classes=4,
    backbone="resnet_tiny",
    norm="bn",
    trainable_layers=5,
    fpn_channels=16,
    min_size=128,
    max_size=128,
    anchor_sizes=(8, 16, 32, 64, 128),
    rpn={
        "train": {"pre_nms_top_n": 2000, "post_nms_top_n": 200},
        "test": {"pre_nms_top_n": 1000, "post_nms_top_n": 100},
    },
    box={"representation_size": 32, "batch_size_per_image": 64},
)


def tiny(**overrides) -> FPNDetector:
    torch.manual_seed(0)
    return build_detector(DetectorConfig.from_dict(TINY), **overrides)


def shapes_batch(n: int = 2, size: int = 128, seed: int = 0):
    """Bright squares (label 1) and bars (label 2) on dark noise, with their boxes."""
    gen = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        image = torch.rand(3, size, size, generator=gen) * 0.2
        boxes = []
        for label, (h, w) in ((1, (30, 30)), (2, (12, 50))):
            y, x = torch.randint(0, size - 50, (2,), generator=gen).tolist()
            image[label - 1, y : y + h, x : x + w] = 1.0
            boxes.append([x, y, x + w, y + h])
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor([1, 2])})
    return images, targets


def test_config_round_trips_through_json_and_rejects_bad_values():
    config = DetectorConfig.from_dict({**TINY, "levels": ("p2",)})
    assert DetectorConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config
    assert DetectorConfig().rpn.test == ProposalCounts(1000, 1000) and DetectorConfig().rpn.train.post_nms_top_n == 2000
    assert (
        DetectorConfig().canonical_size() == 224 and DetectorConfig(min_size=400, max_size=600).canonical_size() == 112
    )
    with pytest.raises(FpnlabError, match="neck"):
        DetectorConfig(neck="c3")
    with pytest.raises(FpnlabError, match="anchor_sizes"):
        DetectorConfig(anchor_sizes=(32, 64))
    with pytest.raises(FpnlabError, match="num_classes"):
        DetectorConfig(num_classes=1)
    with pytest.raises(FpnlabError, match="p6"):
        DetectorConfig(levels=("p6",))


@pytest.mark.parametrize(
    "overrides, levels, anchors_per_location, pooled",
    [
        ({}, ["p2", "p3", "p4", "p5", "p6"], 3, ("p2", "p3", "p4", "p5")),  # Table 1 row (c): FPN
        ({"neck": "c4"}, ["c4"], 15, ("c4",)),  # row (a): all 5 sizes x 3 ratios on C4
        ({"neck": "c5"}, ["c5"], 15, ("c5",)),  # row (b)
        ({"top_down": False}, ["p2", "p3", "p4", "p5", "p6"], 3, ("p2", "p3", "p4", "p5")),  # row (d)
        ({"lateral": False}, ["p2", "p3", "p4", "p5", "p6"], 3, ("p2", "p3", "p4", "p5")),  # row (e)
        ({"levels": ("p2",)}, ["p2"], 15, ("p2",)),  # row (f): P2 only
        ({"roi": {"pooler": "pool"}}, ["p2", "p3", "p4", "p5", "p6"], 3, ("p2", "p3", "p4", "p5")),
    ],
)
def test_variants_train_and_detect(overrides, levels, anchors_per_location, pooled):
    model = tiny(**overrides)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [anchors_per_location] * len(levels)
    assert model.roi_heads.pooler.levels == pooled
    images, targets = shapes_batch()
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    info = model.inspect(images)
    assert info.levels == levels
    for name in levels:
        stride = 128 // info.objectness[name].shape[-1]
        assert info.objectness[name].shape == (2, anchors_per_location, 128 // stride, 128 // stride)
        assert len(info.anchors[name]) == (128 // stride) ** 2 * anchors_per_location
    with torch.no_grad():
        detections = model(images)
    for ours, inspected in zip(detections, info.detections):
        assert set(ours) == {"boxes", "labels", "scores"}
        assert torch.equal(ours["boxes"], inspected["boxes"])


def test_rpn_only_returns_rpn_losses_and_proposals():
    model = tiny(rpn_only=True)
    assert model.roi_heads is None
    images, targets = shapes_batch()
    assert set(model(images, targets)) == {"loss_objectness", "loss_rpn_box_reg"}
    model.eval()
    with torch.no_grad():
        proposals = model(images)
    assert all(set(p) == {"boxes", "scores"} and len(p["boxes"]) == 100 for p in proposals)
    for p, q in zip(proposals, model.propose(images)):
        assert torch.equal(p["boxes"], q["boxes"])


def test_inspect_and_propose():
    model = tiny().eval()
    images = [torch.rand(3, 100, 150), torch.rand(3, 128, 96)]
    info = model.inspect(images)
    assert info.image_sizes == [(85, 128), (128, 96)] and info.input_sizes == [(100, 150), (128, 96)]
    assert info.images.shape == (2, 3, 128, 128)
    expected = torch.nn.functional.interpolate(images[0][None], size=(85, 128), mode="bilinear")[0]
    assert [tuple(r.shape) for r in info.resized] == [(3, 85, 128), (3, 128, 96)]
    assert torch.allclose(info.resized[0], expected, atol=1e-5)  # what the network sees, back in [0, 1]
    assert list(info.features) == ["c2", "c3", "c4", "c5", "p2", "p3", "p4", "p5", "p6"]
    assert info.features["c3"].shape == (2, 64, 16, 16) and info.features["p6"].shape == (2, 16, 2, 2)
    proposals = model.propose(images)
    for p, boxes, levels, roi_levels in zip(proposals, info.proposals, info.proposal_levels, info.roi_levels):
        assert torch.equal(p["boxes"], boxes)
        assert len(levels) == len(boxes) and set(levels.tolist()) <= {2, 3, 4, 5, 6}
        assert set(roi_levels.tolist()) <= {2, 3, 4, 5}
    assert (proposals[0]["boxes"][:, 2:] <= torch.tensor([150.0, 100.0]) + 1e-3).all()  # input pixels
    assert not model.training and model.inspect(images).detections[0]["boxes"].shape[1] == 4


def test_image_without_objects_trains():
    model = tiny()
    images, _ = shapes_batch()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    losses = model(images, empty)
    assert losses["loss_rpn_box_reg"].item() == 0.0 and losses["loss_box_reg"].item() == 0.0
    assert losses["loss_objectness"] > 0 and losses["loss_classifier"] > 0
    sum(losses.values()).backward()


def test_small_detector_from_scratch_learns():
    model = tiny()
    images, targets = shapes_batch(n=2)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    history = []
    for _ in range(20):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert np.mean(history[-3:]) < 0.6 * np.mean(history[:3]), history


IMAGE = torch.rand(3, 64, 64)
BOX = {"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])}


@pytest.mark.parametrize(
    "images, targets, message",
    [
        ([], [], "non-empty list"),
        (IMAGE, [BOX], "non-empty list"),  # a single (3, H, W) image, not a list
        ([torch.rand(1, 64, 64)], [BOX], r"\(3, H, W\)"),
        ([torch.rand(64, 64)], [BOX], r"\(3, H, W\)"),
        ([(IMAGE * 255).to(torch.uint8)], [BOX], "float"),
        ([IMAGE * 255], [BOX], r"\[0, 1\]"),
        ([torch.full((3, 64, 64), float("nan"))], [BOX], "NaN"),
        ([IMAGE], None, "targets are required"),
        ([IMAGE, IMAGE], [BOX], "2 image"),
        ([IMAGE], [{"boxes": torch.tensor([[30.0, 4.0, 4.0, 40.0]]), "labels": torch.tensor([1])}], "x2 <= x1"),
        ([IMAGE], [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 4.0]]), "labels": torch.tensor([1])}], "y2 <= y1"),
        ([IMAGE], [{"boxes": torch.tensor([[4.0, float("nan"), 30.0, 40.0]]), "labels": torch.tensor([1])}], "NaN"),
        ([IMAGE], [{"boxes": torch.tensor([]), "labels": torch.tensor([])}], r"torch.zeros\(\(0, 4\)\)"),
        ([IMAGE], [{"boxes": BOX["boxes"]}], "'labels'"),
        ([IMAGE], [{"boxes": BOX["boxes"], "labels": torch.tensor([4])}], r"1\.\.3"),
        ([IMAGE], [{"boxes": BOX["boxes"], "labels": torch.tensor([0])}], "background"),
        ([IMAGE], [{"boxes": BOX["boxes"], "labels": torch.tensor([1, 2])}], "one label per box"),
    ],
)
def test_bad_input_raises_a_clear_error(images, targets, message):
    model = tiny()
    with pytest.raises(DataError, match=message):
        model(images, targets)
    assert issubclass(DataError, ValueError)


def test_bad_image_is_named_in_eval_too():
    model = tiny().eval()
    with pytest.raises(DataError, match=r"images\[1\]"):
        model([IMAGE, torch.rand(4, 64, 64)])


# --- equality with torchvision's fasterrcnn_resnet50_fpn (random weights, no downloads) ------------------------

NUM_CLASSES = 7
SIZE = dict(min_size=320, max_size=512)  # small images: fast on 2 CPU cores


def calibrate(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights: BatchNorm statistics gathered on random images, random BN affine and RPN biases,
    and a small classifier, so that features are well scaled and each image gets dozens of detections with
    spread-out (not saturated) scores."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
        model.backbone.body.train()(torch.randn(4, 3, 128, 128))
        model.rpn.head.cls_logits.bias.normal_(0.0, 0.5)
        model.rpn.head.bbox_pred.weight.mul_(0.2)  # proposals near their anchors, not all stretched to the border
        model.roi_heads.box_predictor.cls_score.weight.normal_(0.0, 0.002)
        model.roi_heads.box_predictor.cls_score.bias.zero_()
    return model.eval()


@pytest.fixture(scope="module")
def tv_model():
    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **SIZE)
    return calibrate(model, seed=1)


@pytest.fixture(scope="module")
def ours(tv_model):
    return from_torchvision(tv_model)


def images_of(sizes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=gen) for h, w in sizes]


BATCHES = {"one odd image": [(301, 397)], "two odd sizes": [(257, 411), (480, 333)]}


@pytest.fixture(scope="module")
def tv_outputs(tv_model):
    """torchvision's detections and RPN proposals (resized-image pixels) for every batch in BATCHES."""
    outputs = {}
    for name, sizes in BATCHES.items():
        with torch.no_grad(), capture(tv_model.rpn) as proposals:
            outputs[name] = tv_model(images_of(sizes)), proposals[0][0]
    return outputs


class capture:
    """Context manager recording the outputs of ``module`` (a forward hook)."""

    def __init__(self, module: nn.Module):
        self.module, self.outputs = module, []

    def __enter__(self):
        self.handle = self.module.register_forward_hook(lambda _m, _i, out: self.outputs.append(out))
        return self.outputs

    def __exit__(self, *exc):
        self.handle.remove()


def rows(detections: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 6) boxes, score, label sorted lexicographically: equal scores may come in either order."""
    table = torch.cat([detections["boxes"], detections["scores"][:, None], detections["labels"][:, None].float()], 1)
    return table[np.lexsort(table.numpy().T[::-1])]


def assert_same_detections(ours, theirs, atol=1e-4, rtol=0.0):
    for a, b in zip(ours, theirs, strict=True):
        assert len(a["boxes"]) == len(b["boxes"])
        torch.testing.assert_close(rows(a), rows(b), atol=atol, rtol=rtol)


def test_config_and_weights_read_from_torchvision(tv_model, ours):
    config = ours.config
    assert (config.num_classes, config.backbone, config.norm, config.trainable_layers) == (7, "resnet50", "bn", 5)
    assert (config.min_size, config.max_size, config.rpn.test.post_nms_top_n) == (320, 512, 1000)
    assert config.canonical_size() == 224  # torchvision's LevelMapper uses 224 at any input size
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv_model.parameters())
    assert torch.equal(ours.roi_heads.predictor.bbox_pred.weight, tv_model.roi_heads.box_predictor.bbox_pred.weight)


@pytest.mark.parametrize("batch", list(BATCHES))
def test_detections_and_proposals_equal_torchvision(ours, tv_outputs, batch):
    expected, expected_proposals = tv_outputs[batch]
    with torch.no_grad(), capture(ours.rpn) as rpn_outputs:
        detections = ours(images_of(BATCHES[batch]))
    assert all(len(d["boxes"]) >= 30 and d["scores"].std() > 0.01 for d in detections)  # non-trivial
    assert_same_detections(detections, expected)
    for proposals, theirs in zip(rpn_outputs[0].boxes, expected_proposals, strict=True):
        assert len(proposals) == len(theirs) >= 300
        assert torch.equal(
            rows({"boxes": proposals, "scores": proposals[:, 0], "labels": proposals[:, 0]}),
            rows({"boxes": theirs, "scores": theirs[:, 0], "labels": theirs[:, 0]}),
        )


def test_reference_ops_path_equals_torchvision(ours, tv_outputs):
    expected, _ = tv_outputs["one odd image"]
    with torch.no_grad(), use_reference_ops():
        detections = ours(images_of(BATCHES["one odd image"]))
    # plain-PyTorch RoIAlign sums in another order: features differ by ~1e-7 relative, boxes by < 1e-4 relative
    assert_same_detections(detections, expected, atol=1e-4, rtol=1e-5)


def test_frozen_batchnorm_model_with_zero_eps_equals_torchvision(tv_model):
    """The architecture of torchvision's COCO weights: FrozenBatchNorm2d with eps 0, 3 trainable layers."""
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    frozen = FasterRCNN(backbone, num_classes=NUM_CLASSES, **SIZE)
    frozen.load_state_dict(tv_model.state_dict(), strict=False)  # all but BatchNorm's num_batches_tracked
    for m in frozen.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = 0.0
    frozen.eval()
    model = from_torchvision(frozen)
    assert (model.config.norm, model.config.trainable_layers, model.backbone.bn1.eps) == ("frozen_bn", 3, 0.0)
    images = images_of([(333, 290)], seed=3)
    with torch.no_grad():
        assert_same_detections(model(images), frozen(images))


def test_training_losses_equal_torchvision_for_the_same_seed(tv_model, ours):
    """Same anchors sampled from the same random numbers, same ROIs: the four losses agree.

    The RPN's 256 anchors per image are drawn in torchvision's order from the same seed. torchvision draws
    one extra random number per image to pick a training min_size even when there is only one; that draw
    is switched off so both models see the same random stream. Proposals with exactly equal scores may come
    in a different order (torchvision sorts them with an unstable sort), which would change which ROIs a
    random subset picks, so the ROI batch is made large enough to take every proposal.
    """
    theirs, model = copy.deepcopy(tv_model).train(), copy.deepcopy(ours).train()  # BatchNorm updates its stats
    theirs.transform.torch_choice = lambda sizes: sizes[-1]
    theirs.roi_heads.fg_bg_sampler.batch_size_per_image = model.roi_heads.sampler.batch_size_per_image = 4096
    theirs.rpn._post_nms_top_n["training"] = 500  # fewer ROIs: faster
    model.rpn.config = dataclasses.replace(model.rpn.config, train=ProposalCounts(2000, 500))
    images = images_of([(320, 416), (300, 400)], seed=4)
    targets = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0], [50.0, 60.0, 300.0, 220.0]]),
            "labels": torch.tensor([1, 3]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    torch.manual_seed(5)
    expected = theirs(images, targets)
    torch.manual_seed(5)
    losses = model(images, targets)
    assert set(losses) == set(expected)
    for name in expected:
        torch.testing.assert_close(losses[name], expected[name], atol=1e-6, rtol=1e-5)


# --- torchvision's COCO weights (downloads mocked: nothing leaves the machine) ------------------------------


def test_coco_weights_offline_give_a_clear_error(monkeypatch):
    def offline(self, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(FpnlabError, match="could not be downloaded.*connect to the internet"):
        from_torchvision(weights="DEFAULT")
    with pytest.raises(FpnlabError, match="unknown weights"):
        from_torchvision(weights="IMAGENET")
    with pytest.raises(FpnlabError, match="either"):
        from_torchvision()


def test_coco_weights_load_into_our_detector(monkeypatch):
    torch.manual_seed(0)
    coco_shaped = FasterRCNN(resnet_fpn_backbone(backbone_name="resnet50", weights=None), num_classes=91)
    monkeypatch.setattr(
        torchvision.models.WeightsEnum, "get_state_dict", lambda self, *args, **kwargs: coco_shaped.state_dict()
    )
    model = from_torchvision(weights="DEFAULT")
    assert not model.training and len(model.categories) == 91 and model.categories[1] == "person"
    assert model.config.num_classes == 91 and model.config.min_size == 800
    assert all(m.eps == 0.0 for m in model.backbone.modules() if isinstance(m, FrozenBatchNorm2d))
    assert torch.equal(model.neck.smooth["3"].weight, coco_shaped.backbone.fpn.layer_blocks[3][0].weight)
    assert torch.equal(model.rpn.head.conv.weight, coco_shaped.rpn.head.conv[0][0].weight)
