"""Stage 9, the Mask R-CNN head: equal to torchvision's maskrcnn_resnet50_fpn (detections, masks, losses)."""

import copy
import dataclasses

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from fpnlab.errors import DataError
from fpnlab.model.config import DetectorConfig, MaskHeadConfig, ProposalCounts
from fpnlab.model.detector import build_detector
from fpnlab.model.torchvision_port import from_torchvision, torchvision_state_dict
from tests.test_detector import TINY, assert_same_detections, calibrate, images_of, rows, shapes_batch

SIZE = dict(min_size=320, max_size=512)
BATCHES = {"one odd image": [(301, 397)], "two odd sizes": [(257, 411), (480, 333)]}


def tv_mask_rcnn(num_classes: int, seed: int):
    torch.manual_seed(seed)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **SIZE)
    model = calibrate(model, seed=seed + 1)
    with torch.no_grad():  # spread-out mask probabilities, not all 0 or 1
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(0.05)
    return model.eval()


@pytest.fixture(scope="module", params=[3, 7], ids=["3 classes", "7 classes"])
def pair(request):
    tv_model = tv_mask_rcnn(request.param, seed=request.param)
    return tv_model, from_torchvision(tv_model)


def sorted_masks(detections):
    """Masks in the order rows() sorts the detections, so equal scores in another order still line up."""
    table = torch.cat([detections["boxes"], detections["scores"][:, None], detections["labels"][:, None].float()], 1)
    order = [next(i for i, r in enumerate(table) if torch.equal(r, row)) for row in rows(detections)]
    return detections["masks"][order]


def test_mask_settings_and_weights_read_from_torchvision(pair):
    tv_model, ours = pair
    assert ours.config.mask == MaskHeadConfig(enabled=True)  # 14 x 14, sampling 2, four 256 convs, deconv 256
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv_model.parameters())
    assert torch.equal(ours.roi_heads.extra_heads.mask.convs[3].weight, tv_model.roi_heads.mask_head[3][0].weight)
    legacy = {
        k.replace("mask_head.2.0.", "mask_head.mask_fcn3."): v for k, v in tv_model.state_dict().items()
    }  # names before torchvision 0.13
    assert torch.equal(
        torchvision_state_dict(legacy)["roi_heads.extra_heads.mask.convs.2.bias"],
        tv_model.roi_heads.mask_head[2][0].bias,
    )


@pytest.mark.parametrize("batch", list(BATCHES))
def test_detections_and_masks_equal_torchvision(pair, batch):
    tv_model, ours = pair
    images = images_of(BATCHES[batch], seed=7)
    with torch.no_grad():
        expected, detections = tv_model(images), ours(images)
    assert_same_detections(detections, expected)
    for image, ours_one, theirs in zip(images, detections, expected, strict=True):
        assert ours_one["masks"].shape == (len(ours_one["boxes"]), 1, *image.shape[-2:])
        assert len(ours_one["boxes"]) >= 20  # non-trivial: many detections with masks of many sizes
        probabilities = theirs["masks"][theirs["masks"] > 0]
        assert probabilities.std() > 0.05  # spread-out probabilities, not saturated
        torch.testing.assert_close(sorted_masks(ours_one), sorted_masks(theirs), atol=1e-5, rtol=0)


def test_training_losses_equal_torchvision_for_the_same_seed(pair):
    """As the Faster R-CNN test in test_detector.py: same random stream, every proposal in the ROI batch; the
    mask loss of the sampled positives agrees too."""
    tv_model, ours = pair
    theirs, model = copy.deepcopy(tv_model).train(), copy.deepcopy(ours).train()
    theirs.transform.torch_choice = lambda sizes: sizes[-1]
    theirs.roi_heads.fg_bg_sampler.batch_size_per_image = model.roi_heads.sampler.batch_size_per_image = 4096
    theirs.rpn._post_nms_top_n["training"] = 300
    model.rpn.config = dataclasses.replace(model.rpn.config, train=ProposalCounts(2000, 300))
    images = images_of([(320, 416), (300, 400)], seed=4)
    masks = torch.zeros(2, 320, 416, dtype=torch.uint8)
    masks[0, 30:110, 15:95] = 1  # a square inside box 0
    masks[1, 80:200, 60:280] = 1  # an ellipse-ish blob inside box 1
    masks[1, 80:120, 60:100] = 0
    targets = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0], [50.0, 60.0, 300.0, 220.0]]),
            "labels": torch.tensor([1, 2]),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, 300, 400, dtype=torch.uint8),
        },
    ]
    targets[0]["masks"] = masks
    torch.manual_seed(5)
    expected = theirs(images, copy.deepcopy(targets))
    torch.manual_seed(5)
    losses = model(images, targets)
    assert set(losses) == set(expected) and "loss_mask" in losses
    assert 0.1 < losses["loss_mask"] < 2.0  # a real BCE, not the zero of no positives
    for name in expected:
        torch.testing.assert_close(losses[name], expected[name], atol=1e-6, rtol=1e-5)


def test_a_small_mask_rcnn_trains_from_scratch_and_detects_masks():
    torch.manual_seed(0)
    model = build_detector(DetectorConfig.from_dict(TINY), mask={"enabled": True, "conv_layers": [16, 16]})
    images, targets = shapes_batch()
    for target in targets:  # the objects are solid rectangles: their masks are their boxes
        masks = torch.zeros(len(target["boxes"]), 128, 128, dtype=torch.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, target["boxes"].int().tolist()):
            mask[y1:y2, x1:x2] = 1
        target["masks"] = masks
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    history = []
    for _ in range(15):
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # as the training loop does
        optimizer.step()
        history.append(losses["loss_mask"].item())
    assert history[0] == pytest.approx(0.693, abs=0.01)  # ln 2: every mask starts at probability 0.5
    assert history[-1] < 0.3 * history[0]  # the boxes' masks are learnt (0.10 after 15 steps)
    detections = model.eval()(images[:1])[0]
    assert detections["masks"].shape[1:] == (1, 128, 128) and detections["masks"].dtype == torch.float32


def test_masks_of_the_wrong_shape_or_values_are_refused():
    model = build_detector(DetectorConfig.from_dict(TINY), mask={"enabled": True})
    images, targets = shapes_batch()
    targets[0]["masks"] = torch.zeros(2, 64, 128, dtype=torch.uint8)
    with pytest.raises(DataError, match=r"targets\[0\]\['masks'\] must be a \(2, 128, 128\) tensor"):
        model(images, targets)
    targets[0]["masks"] = torch.full((2, 128, 128), 3, dtype=torch.uint8)
    with pytest.raises(DataError, match="only 0 and 1"):
        model(images, targets)


def test_mask_head_needs_the_whole_detector_with_the_2fc_head():
    with pytest.raises(Exception, match="mask.enabled needs the whole detector"):
        DetectorConfig(rpn_only=True, mask=MaskHeadConfig(enabled=True))
    with pytest.raises(Exception, match="one or more conv_layers"):
        MaskHeadConfig(conv_layers=())
