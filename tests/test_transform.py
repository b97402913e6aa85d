"""The detector's input transform: normalise, resize (shorter side / max size), pad to 32, map boxes back."""

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from fpnlab.model.transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform, padded_side, resize_scale


def test_resize_and_pad_numbers_worked_by_hand():
    transform = DetectionTransform(min_size=320, max_size=512)
    # 300 x 400: scale = min(320 / 300, 512 / 400) = 1.0667 -> 320 x floor(426.67) = 426, padded to 320 x 448.
    # 100 x 400: the long side binds: scale = min(3.2, 1.28) = 1.28 -> 128 x 512, padded to 128 x 512.
    batch, _ = transform([torch.rand(3, 300, 400), torch.rand(3, 100, 400)])
    assert batch.image_sizes == [(320, 426), (128, 512)]
    assert tuple(batch.tensor.shape) == (2, 3, 320, 512)
    assert batch.padded_size == (320, 512)
    assert resize_scale((100, 400), 320, 512) == pytest.approx(1.28)
    assert [padded_side(s) for s in (1, 32, 33, 426)] == [32, 32, 64, 448]


def test_padding_is_zero_and_image_content_is_top_left():
    transform = DetectionTransform(min_size=64, max_size=64)
    image = torch.rand(3, 64, 40)  # already the target size: scale 1
    batch, _ = transform([image, torch.rand(3, 40, 64)])
    assert batch.image_sizes == [(64, 40), (40, 64)]
    assert torch.allclose(batch.tensor[0, :, :, :40], transform.normalize(image), atol=1e-6)
    assert batch.tensor[0, :, :, 40:].abs().sum() == 0 and batch.tensor[1, :, 40:, :].abs().sum() == 0


def test_normalize_uses_imagenet_statistics():
    transform = DetectionTransform()
    image = torch.tensor(IMAGENET_MEAN)[:, None, None].expand(3, 4, 4).clone()
    assert transform.normalize(image).abs().max() < 1e-6
    one_std = image + torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(transform.normalize(one_std), torch.ones(3, 4, 4), atol=1e-5)


@pytest.mark.parametrize("sizes", [[(300, 400)], [(257, 411), (480, 333), (199, 201)]])
def test_equals_torchvision_generalized_rcnn_transform(sizes):
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, h, w, generator=gen) for h, w in sizes]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 150.0, 180.0], [0.5, 1.5, 99.0, 60.0]]), "labels": torch.tensor([1, 2])}
        for _ in sizes
    ]
    reference = GeneralizedRCNNTransform(320, 512, list(IMAGENET_MEAN), list(IMAGENET_STD)).eval()
    expected, expected_targets = reference(images, targets)
    batch, resized = DetectionTransform(320, 512)(images, targets)
    assert batch.image_sizes == expected.image_sizes
    assert torch.equal(batch.tensor, expected.tensors)
    for ours, theirs in zip(resized, expected_targets):
        assert torch.equal(ours["boxes"], theirs["boxes"])
    assert torch.equal(targets[0]["boxes"][0], torch.tensor([10.0, 20.0, 150.0, 180.0]))  # caller's dict untouched


def test_postprocess_maps_boxes_back_to_input_pixels():
    transform = DetectionTransform(min_size=320, max_size=512)
    batch, _ = transform([torch.rand(3, 300, 400)])  # resized to 320 x 426
    whole_resized_image = torch.tensor([[0.0, 0.0, 426.0, 320.0], [42.6, 32.0, 213.0, 160.0]])
    result = {"boxes": whole_resized_image, "scores": torch.tensor([0.9, 0.8])}
    back = transform.postprocess([result], batch.image_sizes, [(300, 400)])[0]
    # x scales by 400 / 426, y by 300 / 320; scores are not in pixels and stay
    expected = torch.tensor([[0.0, 0.0, 400.0, 300.0], [40.0, 30.0, 200.0, 150.0]])
    assert torch.allclose(back["boxes"], expected, atol=1e-4)
    assert torch.equal(back["scores"], result["scores"])


def test_postprocess_maps_every_registered_instance_field_with_the_boxes_in_input_pixels():
    transform = DetectionTransform(min_size=320, max_size=512)
    batch, _ = transform([torch.rand(3, 300, 400)])
    seen = []

    def to_input(value, boxes, size):
        seen.append((boxes.clone(), size))
        return value * 2

    transform.instance_fields["masks"] = to_input
    result = {"boxes": torch.tensor([[0.0, 0.0, 426.0, 320.0]]), "masks": torch.ones(1, 1, 28, 28)}
    back = transform.postprocess([result], batch.image_sizes, [(300, 400)])[0]
    assert torch.equal(back["masks"], torch.full((1, 1, 28, 28), 2.0))
    assert torch.allclose(seen[0][0], torch.tensor([[0.0, 0.0, 400.0, 300.0]]), atol=1e-4) and seen[0][1] == (300, 400)


def test_training_boxes_resize_with_their_image():
    transform = DetectionTransform(min_size=320, max_size=512)
    target = {"boxes": torch.tensor([[0.0, 0.0, 400.0, 300.0]]), "labels": torch.tensor([1])}
    batch, (resized,) = transform([torch.rand(3, 300, 400)], [target])
    assert torch.allclose(resized["boxes"], torch.tensor([[0.0, 0.0, 426.0, 320.0]]))
    assert torch.equal(resized["labels"], target["labels"])
