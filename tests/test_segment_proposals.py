"""Segment proposals (FPN paper, Sec. 6): octaves, positives, mask targets, the loss, inference and segment AR,
each checked against numbers worked out by hand."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fpnlab.data import load_split
from fpnlab.engine.coco_scores import mask_rle
from fpnlab.engine.segments import (
    build_proposer,
    fpn_minus_single,
    mask_recall,
    parse_arguments,
    summary,
    train_segment_proposer,
)
from fpnlab.model.matching import BalancedPositiveNegativeSampler
from fpnlab.model.segment_proposals import (
    Candidates,
    SegmentProposalHead,
    SegmentProposer,
    assign_octaves,
    binary_masks,
    flatten_masks,
    level_candidates,
    match_positions,
    segment_loss,
)

SCALES = torch.tensor([32.0, 64.0, 128.0, 256.0])


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy two-core machine two threads wait on each other (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def square(x1: float, y1: float, side: float) -> list[float]:
    return [x1, y1, x1 + side, y1 + side]


def test_objects_go_to_the_scale_nearest_in_log2():
    boxes = torch.tensor(
        [square(0, 0, 40), square(0, 0, 50), square(0, 0, 10), square(0, 0, 600), square(0, 0, 100), [0, 0, 32, 64]]
    )
    # 40 -> 32; 50 -> 64 (|log2 50/64| = 0.36 < log2 50/32 = 0.64); 10 -> 32; 600 -> 256;
    # 100 -> 128 (log2 100/64 = 0.64 > |log2 100/128| = 0.36); 32 x 64 (45.25, the geometric middle) -> 32
    assert assign_octaves(boxes, SCALES).tolist() == [0, 1, 0, 3, 2, 0]


def test_a_level_lays_its_regions_on_the_cell_centres():
    cands = level_candidates((2, 3), 8, torch.tensor([32.0, 64.0]), SCALES, level=3, factor=1.5)
    assert cands.centres.tolist()[:4] == [[4, 4], [4, 4], [12, 4], [12, 4]]  # location-major, then the slots
    assert cands.boxes[0].tolist() == [4 - 24, 4 - 24, 4 + 24, 4 + 24]  # side 1.5 x 32 = 48
    assert cands.boxes[1].tolist() == [4 - 48, 4 - 48, 4 + 48, 4 + 48]  # side 1.5 x 64 = 96
    assert cands.scales.tolist() == [0, 1] * 6 and cands.levels.tolist() == [3] * 12
    assert cands.strides.tolist() == [8.0] * 12


def test_the_positions_within_one_stride_of_the_centre_are_positive():
    level = level_candidates((10, 10), 8, torch.tensor([32.0]), SCALES, level=3, factor=1.5)
    # a 32 x 32 object centred at (40, 44): x centres 36 and 44 are 4 px away, y centre 44 is 0 px away
    # (36 and 52 are 8 px away: not < 8); so row 5, columns 4 and 5, positions 54 and 55
    matched = match_positions(torch.tensor([[24.0, 28.0, 56.0, 60.0]]), level, SCALES)
    assert torch.where(matched >= 0)[0].tolist() == [54, 55]
    # a 64 px object is another octave: no position of this 32 px level is its positive
    assert (match_positions(torch.tensor([[8.0, 12.0, 72.0, 76.0]]), level, SCALES) == -1).all()


def test_a_position_two_objects_claim_goes_to_the_nearest_centre():
    level = level_candidates((10, 10), 8, torch.tensor([32.0]), SCALES, level=3, factor=1.5)
    boxes = torch.tensor([[24.0, 24.0, 56.0, 56.0], [31.0, 24.0, 63.0, 56.0]])  # centres (40, 40) and (47, 40)
    matched = match_positions(boxes, level, SCALES)
    # rows 4 and 5 (y centres 36, 44: |dy| 4 for both objects); x centres 36, 44 claim object 0 (|dx| 4, 4),
    # 44, 52 claim object 1 (|dx| 3, 5): column 5 (x 44) is nearer to object 1
    assert {int(i): int(matched[i]) for i in torch.where(matched >= 0)[0]} == {
        44: 0, 45: 1, 46: 1, 54: 0, 55: 1, 56: 1,
    }  # fmt: skip


def two_by_two() -> Candidates:
    """Four 14 x 14 regions tiling a 28 x 28 image: a stride-14 level with one slot of scale 14, factor 1."""
    return level_candidates((2, 2), 14, torch.tensor([14.0]), torch.tensor([14.0]), level=4, factor=1.0)


def test_the_loss_is_the_hand_computed_cross_entropy():
    cands = two_by_two()
    assert cands.boxes.tolist() == [[0, 0, 14, 14], [14, 0, 28, 14], [0, 14, 14, 28], [14, 14, 28, 28]]
    masks = torch.zeros((1, 28, 28), dtype=torch.uint8)
    masks[0, :, :7] = 1  # a band over the left half of the top-left region, top to bottom
    target = {"boxes": torch.tensor([[0.0, 0.0, 14.0, 14.0]]), "masks": masks}  # centre (7, 7): only region 0
    torch.manual_seed(0)
    logits, mask_logits = torch.randn(1, 4), torch.randn(1, 4, 14, 14)
    losses = segment_loss(
        logits, mask_logits, cands, torch.tensor([14.0]), [target], BalancedPositiveNegativeSampler(256, 0.5)
    )
    # RoIAlign over region 0 at 14 x 14: one sample per 1 px bin at its centre x = j + 0.5, halfway between
    # pixels j and j + 1: columns 0..5 read 1, column 6 reads (1 + 0) / 2, the rest 0
    row = torch.tensor([1.0] * 6 + [0.5] + [0.0] * 7)
    expected_mask = F.binary_cross_entropy_with_logits(mask_logits[0, 0], row.expand(14, 14))
    expected_objectness = F.binary_cross_entropy_with_logits(logits[0], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert losses["loss_objectness"].item() == pytest.approx(expected_objectness.item(), abs=1e-6)
    assert losses["loss_mask"].item() == pytest.approx(expected_mask.item(), abs=1e-6)


def test_without_objects_the_mask_loss_is_zero_and_attached():
    logits = torch.full((1, 4), -3.0, requires_grad=True)
    mask_logits = torch.randn(1, 4, 14, 14, requires_grad=True)
    target = {"boxes": torch.zeros((0, 4)), "masks": torch.zeros((0, 28, 28), dtype=torch.uint8)}
    losses = segment_loss(
        logits, mask_logits, two_by_two(), torch.tensor([14.0]), [target], BalancedPositiveNegativeSampler(256, 0.5)
    )
    assert losses["loss_mask"].item() == 0.0 and losses["loss_mask"].requires_grad
    assert losses["loss_objectness"].item() == pytest.approx(F.softplus(torch.tensor(-3.0)).item(), abs=1e-6)
    sum(losses.values()).backward()
    assert mask_logits.grad is not None and mask_logits.grad.abs().sum() == 0


def test_the_head_is_an_mlp_on_each_5x5_window():
    torch.manual_seed(0)
    head = SegmentProposalHead(in_channels=3, hidden=6, slots=2)
    for p in head.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(1, 3, 9, 9)
    objectness, masks = head([x])
    assert objectness[0].shape == (1, 2, 9, 9) and masks[0].shape == (1, 2 * 196, 9, 9)
    window = x[0, :, 2:7, 3:8].flatten()  # the 5 x 5 window around position (4, 5)
    hidden = torch.relu(head.mlp.weight.flatten(1) @ window + head.mlp.bias)  # (6,) the MLP's hidden layer
    score = head.objectness.weight.flatten(1) @ hidden + head.objectness.bias
    assert torch.allclose(objectness[0][0, :, 4, 5], score, atol=1e-4)


def test_masks_flatten_in_the_candidates_order():
    masks = torch.arange(2 * 2 * 196 * 3 * 4, dtype=torch.float32).view(2, 2 * 196, 3, 4)
    flat = flatten_masks(masks, 14)
    assert flat.shape == (2, 3 * 4 * 2, 14, 14)
    b, s, r, c, i, j = 1, 1, 5, 9, 2, 3
    assert flat[b, (i * 4 + j) * 2 + s, r, c] == masks[b, s * 196 + r * 14 + c, i, j]


@pytest.mark.parametrize("variant, top_n, count", [("fpn", 1000, 1000), ("single", 10**6, 20 * 20 * 4)])
def test_inference_returns_the_best_regions_of_each_scale(variant, top_n, count):
    torch.manual_seed(0)
    model = build_proposer(variant, hidden=8)
    model.top_n = top_n
    [out] = model.eval()([torch.rand(3, 160, 160)])  # 320 px inside: 80^2 + 40^2 + 20^2 + 10^2 = 8500 positions
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "boxes": (count, 4), "scores": (count,), "masks": (count, 1, 14, 14), "levels": (count,),
    }  # fmt: skip
    assert (out["scores"][:-1] >= out["scores"][1:]).all()
    sides = out["boxes"][:, 2] - out["boxes"][:, 0]  # 1.5 x scale, halved back to the 160 px input
    assert set(sides.unique().tolist()) <= {24.0, 48.0, 96.0, 192.0}
    if variant == "fpn":
        assert (sides == 24.0 * 2.0 ** (out["levels"] - 2)).all()  # P2 carries 32 px, P5 256 px
    else:
        assert set(out["levels"].tolist()) == {4} and set(sides.unique().tolist()) == {24.0, 48.0, 96.0, 192.0}


def test_eight_thousand_five_hundred_positions_on_the_fpn():
    model = build_proposer("fpn", hidden=8).eval()
    model.top_n = 10**6
    [out] = model([torch.rand(3, 160, 160)])
    assert len(out["scores"]) == 8500
    assert [int((out["levels"] == k).sum()) for k in (2, 3, 4, 5)] == [6400, 1600, 400, 100]


def test_a_certain_mask_fills_its_region_and_nothing_else():
    # an all-ones 14 x 14 mask at region [4, 32]: exactly the region's pixels 4..32 (both ends included, as
    # torchvision pastes a box's whole pixels) pass the 0.5 threshold; a mask of 0.4 everywhere pastes nothing
    pasted = binary_masks(torch.ones(1, 1, 14, 14), torch.tensor([[4.0, 4.0, 32.0, 32.0]]), (40, 40))
    expected = torch.zeros(1, 40, 40, dtype=torch.bool)
    expected[0, 4:33, 4:33] = True
    assert torch.equal(pasted, expected)
    assert not binary_masks(torch.full((1, 1, 14, 14), 0.4), torch.tensor([[4.0, 4.0, 32.0, 32.0]]), (40, 40)).any()


@pytest.fixture(scope="module")
def val():
    return load_split("shapes-mini", "val", masks=True)


def test_segment_recall_of_the_ground_truth_is_one_and_of_nothing_zero(val):
    ids, results = [], []
    for index in range(6):
        _, target = val[index]
        ids.append(target["image_id"])
        results += [
            {"image_id": target["image_id"], "category_id": 1, "segmentation": mask_rle(m), "score": 1.0}
            for m in target["masks"]
        ]
    perfect = mask_recall(results, val, ids)
    assert all(value in (1.0, -1.0) for value in perfect.values()) and perfect["AR@1000"] == 1.0
    assert perfect["AR@100"] == 1.0
    assert set(mask_recall([], val, ids).values()) <= {0.0, -1.0}
    assert mask_recall([], val, ids)["AR@1000"] == 0.0


def test_a_proposal_of_half_an_object_is_recalled_only_below_iou_0_55(val):
    _, target = val[0]
    mask = target["masks"][0].clone()
    rows = torch.where(mask.any(dim=1))[0]
    keep = rows[: len(rows) // 2 + 1]  # about the top half of the object's rows
    cut = torch.zeros_like(mask)
    cut[keep] = mask[keep]
    iou = float((cut & mask).sum() / mask.sum())
    result = {"image_id": target["image_id"], "category_id": 1, "segmentation": mask_rle(cut), "score": 1.0}
    found = mask_recall([result], val, [target["image_id"]])["AR@1000"]
    thresholds = torch.arange(0.5, 0.951, 0.05)
    assert found == pytest.approx(float((iou >= thresholds - 1e-9).sum()) / 10 / len(target["masks"]), abs=1e-6)


def test_a_few_iterations_lower_the_loss():
    _, run = train_segment_proposer("single", seed=0, iterations=30, hidden=16, max_train_images=2, progress=None)
    assert sum(run["losses"][-5:]) / 5 < 0.8 * sum(run["losses"][:5]) / 5


def test_an_unknown_variant_is_named():
    with pytest.raises(Exception, match="unknown segment proposal variant 'p3'"):
        build_proposer("p3")


def test_segment_proposer_needs_masks_to_learn():
    model = SegmentProposer(("p4",), ((32,),), hidden=8)
    with pytest.raises(ValueError, match="needs 'masks'"):
        model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[1.0, 1.0, 20.0, 20.0]]), "labels": torch.tensor([1])}])


def test_the_record_summarises_the_seeds():
    def run(variant: str, seed: int, ar: float, small: float) -> dict:
        metrics = {"AR@100": ar, "AR@1000": ar, "AR_s@1000": small, "AR_m@1000": ar, "AR_l@1000": ar}
        return {"variant": variant, "seed": seed, "metrics": metrics, "train_s": 10.0 * (seed + 1)}

    runs = [run("fpn", 0, 0.3, 0.2), run("single", 0, 0.2, -1.0), run("fpn", 1, 0.5, 0.4), run("single", 1, 0.1, 0.1)]
    table = summary(runs)
    assert table["fpn"]["AR@1000"]["mean"] == pytest.approx(0.4)
    assert table["fpn"]["AR@1000"]["std"] == pytest.approx(2**0.5 / 10)  # sample std of 0.3 and 0.5
    assert table["single"]["AR_s@1000"] == {"mean": 0.1, "std": None, "n": 1}  # -1: no object of that size
    assert table["fpn"]["train_s"]["mean"] == 15.0
    delta = fpn_minus_single(runs)["AR@1000"]
    assert delta["delta"] == pytest.approx((0.1 + 0.4) / 2) and (delta["fpn_higher"], delta["seeds"]) == (2, 2)


def test_the_results_readme_command_is_the_records_and_the_parser_takes_it():
    root = Path(__file__).resolve().parent.parent
    row = next(
        line for line in (root / "results" / "README.md").read_text().splitlines() if "segment_proposals_cpu" in line
    )
    command = row.split("`")[-2]  # the row's last code span: the command that remakes the record
    assert command == json.loads((root / "results" / "segment_proposals_cpu.json").read_text())["command"]
    args = parse_arguments(shlex.split(command)[3:])  # after "python -m fpnlab.engine.segments"
    assert (args.variants, args.seeds, args.unseen_seeds, args.iterations) == ("fpn,single", "0,1,2", "3,4", 600)
    assert args.result == "segment_proposals_cpu"
