"""The conv5 ROI head of the C4 baseline (FPN paper Table 3 row a), against the same computation done by hand
with torchvision's RoIAlign and ResNet layer4: pooled C4 -> conv5 -> average -> class and box layers."""

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from fpnlab.ablation.variants import STAGES, VARIANTS, check_names
from fpnlab.engine.presets import PRESETS
from fpnlab.errors import FpnlabError
from fpnlab.model.backbone import ResNetBody
from fpnlab.model.config import BoxHeadConfig, DetectorConfig, RoIConfig
from fpnlab.model.detector import build_detector
from fpnlab.model.res5_head import Res5Head
from fpnlab.model.transform import ImageBatch
from tests.test_backbone import randomise_frozen_bn
from tests.test_detector import TINY, shapes_batch

RES5 = {**TINY, "neck": "c4", "box": {**TINY["box"], "head": "res5"}}  # the tiny test detector, Table 3 row (a)


def res5_detector(**overrides) -> nn.Module:
    torch.manual_seed(0)
    return build_detector(DetectorConfig.from_dict(RES5), **overrides)


def record_outputs(model: nn.Module, names: list[str]) -> dict[str, object]:
    """Forward hooks that keep the last output of each named submodule."""
    seen = {}
    for name in names:
        model.get_submodule(name).register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
    return seen


def by_hand(c4: torch.Tensor, proposals: list, conv5: nn.Module, predictor: nn.Module, sampling_ratio: int = 2):
    """torchvision's RoIAlign at 1/16 to 14 x 14, then conv5, the mean over 7 x 7 and the two linear layers."""
    pooled = torchvision.ops.roi_align(c4, proposals, (14, 14), 1 / 16, sampling_ratio, aligned=False)
    x = conv5(pooled).mean(dim=(2, 3))  # (R, C5)
    cls, box = predictor.cls_score, predictor.bbox_pred
    return x @ cls.weight.T + cls.bias, x @ box.weight.T + box.bias


@pytest.mark.parametrize(
    "backbone, norm, proposals",
    [
        ("resnet50", "frozen_bn", 4),
        ("resnet_tiny", "bn", 20),
        ("resnet_tiny", "gn", 20),
        ("resnet_tiny", "frozen_bn", 20),
    ],
)
def test_detector_scores_equal_roi_align_conv5_mean_and_linear_layers_by_hand(backbone, norm, proposals):
    counts = {"pre_nms_top_n": 1000, "post_nms_top_n": proposals}
    model = res5_detector(backbone=backbone, norm=norm, rpn={"test": counts}).eval()
    if backbone == "resnet50":  # torchvision's own layer4 weights, with non-trivial frozen statistics
        reference = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d).layer4.eval()
        randomise_frozen_bn(reference, torch.Generator().manual_seed(0))
        model.roi_heads.box_head.layer4.load_state_dict(reference.state_dict())
    else:  # resnet_tiny has no torchvision twin: a copy of the head's layer4, run outside fpnlab
        reference = copy.deepcopy(model.roi_heads.box_head.layer4).eval()
    seen = record_outputs(model, ["backbone", "rpn", "roi_heads.predictor"])
    images, _ = shapes_batch()
    with torch.no_grad():
        model(images)
        logits, deltas = by_hand(seen["backbone"]["c4"], seen["rpn"].boxes, reference, model.roi_heads.predictor)
    assert [len(b) for b in seen["rpn"].boxes] == [proposals, proposals]
    assert logits.shape == (2 * proposals, 4) and deltas.shape == (2 * proposals, 16)
    torch.testing.assert_close(seen["roi_heads.predictor"][0], logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen["roi_heads.predictor"][1], deltas, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone, widths", [("resnet_tiny", (128, 256)), ("resnet50", (1024, 2048))])
@pytest.mark.parametrize("norm", ["frozen_bn", "bn", "gn"])
def test_head_maps_any_number_of_rois_to_one_vector_each(backbone, widths, norm):
    head = Res5Head(ResNetBody(backbone, norm).split_conv5()).eval()
    assert head.out_features == widths[1]
    for rois in (0, 1, 3) if backbone == "resnet_tiny" else (0, 1):
        with torch.no_grad():
            assert head(torch.randn(rois, widths[0], 14, 14)).shape == (rois, widths[1])


def test_no_proposals_give_no_detections():
    model = res5_detector().eval()
    c4 = torch.randn(2, 128, 8, 8)  # C4 of a 128 x 128 batch
    batch = ImageBatch(torch.zeros(2, 3, 128, 128), [(128, 128), (128, 128)])
    with torch.no_grad():
        detections, _ = model.roi_heads({"c4": c4}, [torch.zeros(0, 4), torch.zeros(0, 4)], batch)
    assert [len(d["boxes"]) for d in detections] == [0, 0]


@pytest.mark.parametrize("norm", ["bn", "gn", "frozen_bn"])
def test_tiny_detector_with_the_conv5_head_trains(norm):
    model = res5_detector(norm=norm, box={"batch_size_per_image": 16})
    head = model.roi_heads.box_head.layer4[0].conv1.weight
    before = head.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    images, targets = shapes_batch()
    for _ in range(3):
        losses = model(images, targets)
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
        assert all(torch.isfinite(v) for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert not torch.equal(head, before)  # conv5 learns, as a head


def test_config_accepts_2fc_and_res5_and_names_a_bad_head():
    assert BoxHeadConfig().head == "2fc" and BoxHeadConfig(head="res5").head == "res5"
    with pytest.raises(FpnlabError, match=r"^BoxHeadConfig.head must be one of \('2fc', 'res5'\), got 'conv5'.$"):
        BoxHeadConfig(head="conv5")
    with pytest.raises(FpnlabError, match=r"^DetectorConfig: box.head='res5' \(the conv5 head\) runs on C4 and needs"):
        DetectorConfig(box=BoxHeadConfig(head="res5"))  # neck="fpn"
    res5 = DetectorConfig(neck="c4", box=BoxHeadConfig(head="res5"))
    assert (res5.pool_size(), DetectorConfig().pool_size()) == (14, 7)  # conv5 halves 14 x 14 back to 7 x 7
    assert DetectorConfig(neck="c4", roi=RoIConfig(output_size=5), box=res5.box).pool_size() == 10
    assert DetectorConfig(neck="c4", fpn_channels=4096, box=BoxHeadConfig(head="res5")).fpn_channels == 4096  # no fc6


def test_the_variant_moves_conv5_from_the_backbone_into_the_head():
    base = PRESETS["test"].model
    config = VARIANTS["c4_res5"].apply(base)
    assert (config.neck, config.box.head, config.rpn_levels()) == ("c4", "res5", ("c4",))
    assert VARIANTS["c4_res5"].label == "(a) C4 + conv5" and VARIANTS["c4"].label == "(a) C4"
    model = build_detector(config, trainable_layers=0)
    seen = record_outputs(model, ["backbone"])
    keys = model.state_dict().keys()
    assert not any(k.startswith("backbone.layer4") for k in keys)
    assert "roi_heads.box_head.layer4.0.conv1.weight" in keys
    assert all(p.requires_grad for p in model.roi_heads.box_head.parameters())  # the head trains
    assert not any(p.requires_grad for p in model.backbone.parameters())  # trainable_layers=0 still holds
    model.eval()(shapes_batch()[0])
    assert list(seen["backbone"]) == ["c2", "c3", "c4"] and model.backbone.out_channels == {
        "c2": 32,
        "c3": 64,
        "c4": 128,
    }
    assert "c4_res5" in STAGES["detector"].variants and "c4_res5" not in STAGES["rpn"].variants
    with pytest.raises(
        FpnlabError, match=r"^ablation variant 'c4_res5' is not a row of the rpn stage; choose from c4, c5,"
    ):
        check_names("rpn", ["c4_res5"])
