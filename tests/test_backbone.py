"""Stage 1: the ResNet body, against torchvision's resnet_fpn_backbone body (random weights, no downloads)."""

import math
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from fpnlab.errors import FpnlabError
from fpnlab.model.backbone import ResNetBody


def randomise_frozen_bn(module: nn.Module, gen: torch.Generator) -> None:
    """Give every FrozenBatchNorm2d non-trivial statistics, so equality tests exercise them."""
    for m in module.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.weight.shape[0]
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


@pytest.mark.parametrize(
    "name, channels",
    [("resnet_tiny", [32, 64, 128, 256]), ("resnet18", [64, 128, 256, 512]), ("resnet50", [256, 512, 1024, 2048])],
)
def test_shapes_and_strides(name, channels):
    body = ResNetBody(name).eval()
    with torch.no_grad():
        features = body(torch.randn(2, 3, 64, 96))
    assert list(features) == ["c2", "c3", "c4", "c5"]
    assert body.strides == {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
    assert body.out_channels == dict(zip(features, channels))
    for key, x in features.items():
        assert x.shape == (2, body.out_channels[key], 64 // body.strides[key], 96 // body.strides[key])


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_equals_torchvision_body(name):
    reference = resnet_fpn_backbone(backbone_name=name, weights=None).body.eval()  # FrozenBatchNorm2d
    randomise_frozen_bn(reference, torch.Generator().manual_seed(0))
    body = ResNetBody(name, "frozen_bn").eval()
    body.load_state_dict(reference.state_dict())  # strict: the names map one to one
    for size in [(64, 96), (67, 45)]:
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ours, theirs = body(x), reference(x)
        for (key, a), b in zip(ours.items(), theirs.values()):
            assert torch.equal(a, b), (key, size)


@pytest.mark.parametrize("trainable_layers", [0, 1, 3, 5])
def test_trainable_layers_match_torchvision(trainable_layers):
    reference = resnet_fpn_backbone(
        backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=trainable_layers
    ).body
    body = ResNetBody("resnet18", "bn", trainable_layers=trainable_layers)
    expected = {n: p.requires_grad for n, p in reference.named_parameters()}
    assert {n: p.requires_grad for n, p in body.named_parameters()} == expected
    assert sum(expected.values()) > 0 if trainable_layers else sum(expected.values()) == 0


def test_defaults_train_everything_from_scratch_and_three_stages_when_frozen():
    for norm in ("bn", "gn"):
        assert all(p.requires_grad for p in ResNetBody("resnet_tiny", norm).parameters())
    frozen = ResNetBody("resnet18")
    trained = {n.split(".")[0] for n, p in frozen.named_parameters() if p.requires_grad}
    assert trained == {"layer2", "layer3", "layer4"}


def test_norm_layers():
    assert isinstance(ResNetBody("resnet_tiny", "frozen_bn").bn1, FrozenBatchNorm2d)
    assert isinstance(ResNetBody("resnet_tiny", "bn").bn1, nn.BatchNorm2d)
    gn = ResNetBody("resnet_tiny", "gn")
    groups = {m.num_channels: m.num_groups for m in gn.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {32: 8, 64: 16, 128: 32, 256: 32}  # at least 4 channels per group, at most 32 groups
    assert ResNetBody("resnet18", "gn").layer4[0].bn1.num_groups == 32


def test_batchnorm_state_dict_loads_into_frozen_bn():
    # torchvision's fasterrcnn_resnet50_fpn(weights=None) uses BatchNorm2d; its body must still load.
    trained = ResNetBody("resnet18", "bn")
    body = ResNetBody("resnet18", "frozen_bn")
    body.load_state_dict(trained.state_dict())  # num_batches_tracked is dropped by FrozenBatchNorm2d
    assert torch.equal(body.layer3[0].bn1.running_var, trained.layer3[0].bn1.running_var)


@pytest.mark.parametrize("norm", ["gn", "bn"])
def test_tiny_body_learns_to_tell_two_patterns_apart(norm):
    """Every parameter gets a finite gradient, and 30 SGD steps on C5 features separate vertical from
    horizontal stripes (a linear read-out: loss well below chance, log 2)."""
    torch.manual_seed(0)
    body, readout = ResNetBody("resnet_tiny", norm), torch.nn.Linear(256, 2)
    stripes = torch.zeros(8, 3, 64, 64)
    stripes[:4, :, :, ::4] = 1.0  # vertical
    stripes[4:, :, ::4, :] = 1.0  # horizontal
    labels = torch.tensor([0] * 4 + [1] * 4)
    optimizer = torch.optim.SGD([*body.parameters(), *readout.parameters()], lr=0.05, momentum=0.9)
    for step in range(30):
        logits = readout(body(stripes + 0.05 * torch.randn_like(stripes))["c5"].mean(dim=(2, 3)))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in body.parameters())
        optimizer.step()
    assert loss.item() < 0.2 * math.log(2)


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path


def test_pretrained_offline_gives_clear_error(empty_torch_home, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(FpnlabError, match="could not be downloaded.*no network.*pretrained=False"):
        ResNetBody("resnet18", pretrained=True)


def test_pretrained_loads_through_torchvision_weights_api(empty_torch_home):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    checkpoint = empty_torch_home / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    checkpoint.parent.mkdir(parents=True)
    saved = torchvision.models.resnet18(weights=None).state_dict()  # stands in for the real download
    torch.save(saved, checkpoint)
    body = ResNetBody("resnet18", "frozen_bn", pretrained=True)
    assert torch.equal(body.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert torch.equal(body.bn1.running_mean, saved["bn1.running_mean"])


def test_bad_arguments():
    with pytest.raises(FpnlabError, match="norm"):
        ResNetBody("resnet18", "layernorm")
    with pytest.raises(FpnlabError, match="backbone"):
        ResNetBody("resnet9")
    with pytest.raises(FpnlabError, match="trainable_layers"):
        ResNetBody("resnet18", trainable_layers=6)
    with pytest.raises(FpnlabError, match="resnet_tiny"):
        ResNetBody("resnet_tiny", pretrained=True)
    with pytest.raises(FpnlabError, match="BatchNorm"):
        ResNetBody("resnet18", "gn", pretrained=True)


def test_receptive_fields_of_c2_to_c5():
    """By hand: stem conv 7 (stride 2), max pool 3 (+2 x 2, stride 4), then each 3x3 conv adds 2 x its jump."""
    from fpnlab.teaching.receptive import receptive_fields, with_3x3_convs

    tiny = receptive_fields(ResNetBody("resnet_tiny", "bn"))  # one BasicBlock (two 3x3) per stage
    assert tiny == {"c2": 11 + 8 + 8, "c3": 27 + 8 + 16, "c4": 51 + 16 + 32, "c5": 99 + 32 + 64}
    r50 = receptive_fields(ResNetBody("resnet50"))  # bottlenecks: one 3x3 each, 3/4/6/3 blocks
    assert r50 == {"c2": 11 + 3 * 8, "c3": 35 + 8 + 3 * 16, "c4": 91 + 16 + 5 * 32, "c5": 267 + 32 + 2 * 64}
    assert with_3x3_convs(27, 4, 2) == 43  # P2 without top-down, plus the RPN's 3x3
