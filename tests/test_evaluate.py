"""Evaluation: COCO metrics and proposal recall of oracle models whose scores are known exactly, level counts."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from fpnlab.data import CATEGORIES, load_split, shapes_mini
from fpnlab.engine.checkpoint import DEMO_CHECKPOINT, load_checkpoint, load_model, save_checkpoint
from fpnlab.engine.evaluate import (
    COCO_METRICS,
    PROPOSAL_METRICS,
    coco_metrics,
    evaluate_checkpoint,
    format_table,
    level_statistics,
    proposal_recall,
)
from fpnlab.engine.presets import get_preset
from fpnlab.engine.state import build_model
from fpnlab.errors import FpnlabError
from fpnlab.model.boxes import box_iou, xywh_to_xyxy

N_IMAGES = 10
SHIFT = 0.16  # boxes moved right by 16% of their width: IoU = (1 - 0.16) / (1 + 0.16) = 0.724


class Oracle(nn.Module):
    """Answers each image with its ground truth, optionally shifted, with wrong labels, or only for some images.

    It recognises an image by its pixels, so it answers right in any order and on any DDP shard.
    """

    def __init__(self, dataset, shift: float = 0.0, label_offset: int = 0, answer_every: int = 1) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # tells the evaluation which device to use
        self.truth = {pixels(image): target for image, target in (dataset[i] for i in range(len(dataset)))}
        self.answered = {pixels(dataset[i][0]) for i in range(0, len(dataset), answer_every)}
        self.shift, self.label_offset, self.num_classes = shift, label_offset, dataset.num_classes

    def _answer(self, image: Tensor) -> dict[str, Tensor]:
        target = self.truth[pixels(image)]
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] += self.shift * (boxes[:, 2] - boxes[:, 0])[:, None]
        labels = (target["labels"] - 1 + self.label_offset) % (self.num_classes - 1) + 1
        keep = pixels(image) in self.answered
        return {
            "boxes": boxes[: keep * len(boxes)],
            "labels": labels[: keep * len(boxes)],
            "scores": torch.ones(keep * len(boxes)),
        }

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [self._answer(image) for image in images]

    def propose(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [{k: v for k, v in self._answer(image).items() if k != "labels"} for image in images]


def pixels(image: Tensor) -> bytes:
    return image.numpy().tobytes()


def well_apart(boxes: list[list[float]]) -> bool:
    """No two boxes overlap with IoU > 0.3, so that a shifted box can only match its own object."""
    xyxy = xywh_to_xyxy(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    return len(boxes) > 0 and bool(((box_iou(xyxy, xyxy) - torch.eye(len(boxes))) <= 0.3).all())


def write_sparse_id_dataset(root: Path) -> Path:
    """10 shapes-mini val images (objects well apart) whose category ids are 10, 20, ..., not the contiguous
    labels 1, 2, ..."""
    paths = shapes_mini()
    data = json.loads(paths.val_json.read_text())
    boxes: dict[int, list] = {}
    for a in data["annotations"]:
        boxes.setdefault(a["image_id"], []).append(a["bbox"])
    data["images"] = [image for image in data["images"] if well_apart(boxes.get(image["id"], []))][:N_IMAGES]
    kept = {image["id"] for image in data["images"]}
    data["annotations"] = [
        {**a, "category_id": 10 * a["category_id"]} for a in data["annotations"] if a["image_id"] in kept
    ]
    data["categories"] = [{**c, "id": 10 * c["id"]} for c in data["categories"]]
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / f"{split}.json").write_text(json.dumps(data))
        (root / split).symlink_to(paths.val_images)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return load_split(write_sparse_id_dataset(tmp_path_factory.mktemp("sparse-ids")), "val")


def evaluate(dataset, **oracle) -> dict[str, float]:
    return coco_metrics(Oracle(dataset, **oracle), dataset, batch_size=3, progress=False)


def test_perfect_detections_score_one_through_the_category_id_mapping(dataset):
    assert dataset.label_to_cat_id[1] == 10
    metrics = evaluate(dataset)
    assert list(metrics) == list(COCO_METRICS)
    for name in ("AP", "AP50", "AP75", "AP_s", "AP_m", "AP_l", "AR100", "AR_s", "AR_m", "AR_l"):
        assert metrics[name] == pytest.approx(1.0), name
    # with exact boxes, AR_k is the share of a class's objects that k detections per image can find,
    # averaged over the classes
    objects = Counter((a["category_id"], a["image_id"]) for a in dataset.coco.dataset["annotations"])
    classes = sorted({c for c, _ in objects})
    for k in (1, 10):
        shares = [
            sum(min(k, n) for (c, _), n in objects.items() if c == cat)
            / sum(n for (c, _), n in objects.items() if c == cat)
            for cat in classes
        ]
        assert metrics[f"AR{k}"] == pytest.approx(sum(shares) / len(shares))
    assert metrics["AR1"] < metrics["AR10"]  # images hold several objects of a class


def test_wrong_classes_score_almost_zero(dataset):
    metrics = evaluate(dataset, label_offset=1)  # only a box that happens to overlap another class scores
    assert all(0.0 <= value < 0.01 for value in metrics.values())


def test_boxes_at_iou_072_count_for_half_of_the_ten_iou_thresholds(dataset):
    metrics = evaluate(dataset, shift=SHIFT)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == 0.0
    assert metrics["AP"] == pytest.approx(0.5)  # matched at IoU 0.50, 0.55, 0.60, 0.65, 0.70 only
    assert metrics["AR100"] == pytest.approx(0.5)


def test_proposal_recall_is_class_agnostic_average_recall(dataset):
    exact = proposal_recall(Oracle(dataset, label_offset=1), dataset, batch_size=4, progress=False)
    assert list(exact) == list(PROPOSAL_METRICS)
    assert all(value == pytest.approx(1.0) for value in exact.values())  # labels do not matter
    shifted = proposal_recall(Oracle(dataset, shift=SHIFT), dataset, batch_size=4, progress=False)
    assert all(value == pytest.approx(0.5) for value in shifted.values())


def test_format_table_prints_every_value_and_dashes_for_missing_sizes():
    one_row = format_table({"AP": 0.41234, "AP_l": -1.0}, title="COCO")
    assert one_row.splitlines() == ["COCO", "     AP  AP_l", "  0.412     -"]
    rows = format_table({"p2": {"gt": 12, "anchors": 40}, "p3": {"gt": 3, "anchors": 9}})
    assert rows.splitlines() == ["    gt  anchors", "p2  12       40", "p3   3        9"]
    ragged = format_table({"p2": {"gt": 12}, "p3": {"anchors": 9}})  # a value a row lacks stays blank
    assert ragged.splitlines() == ["    gt  anchors", "p2  12         ", "p3            9"]


def test_level_statistics_account_for_every_box_anchor_proposal_and_roi():
    model = build_model(get_preset("test"), num_classes=len(CATEGORIES) + 1).eval()
    val = load_split("shapes-mini", "val")
    stats = level_statistics(model, val, max_images=3, batch_size=2, progress=False)
    assert set(stats) <= {"p2", "p3", "p4", "p5", "p6"} and set(stats) >= {"p2", "p3", "p4", "p5"}
    column = {kind: sum(row[kind] for row in stats.values()) for kind in ("gt", "anchors", "proposals", "rois")}
    samples = [val[i] for i in range(3)]
    assert column["gt"] == sum(len(target["boxes"]) for _, target in samples)
    assert column["anchors"] >= column["gt"]  # every box keeps at least its best anchor (low-quality rule)
    n_proposals = sum(len(p["boxes"]) for p in model.propose([image for image, _ in samples]))
    assert column["proposals"] == column["rois"] == n_proposals
    assert stats.get("p6", {}).get("gt", 0) == 0 and stats.get("p6", {}).get("rois", 0) == 0  # Eq. 1: k <= 5
    # 160 px images seen at 128 px (x0.8); Eq. 1 with the canonical size of that input, 224 x 128 / 800 = 35.84
    expected = {k: 0 for k in range(2, 6)}
    for _, target in samples:
        for x1, y1, x2, y2 in (target["boxes"] * 0.8).tolist():
            k = math.floor(4 + math.log2(math.sqrt((x2 - x1) * (y2 - y1)) / 35.84) + 1e-6)
            expected[min(max(k, 2), 5)] += 1
    assert {k: stats.get(f"p{k}", {}).get("gt", 0) for k in range(2, 6)} == expected
    assert sum(v > 0 for v in expected.values()) >= 3  # at this scale boxes land on several levels


class SizeOracle(Oracle):
    """Proposals: small and large objects exactly, medium ones at IoU 0.72; ahead of them all, 100 decoys per
    image that match nothing, so the top 100 hold no object at all."""

    def propose(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        answers = []
        for image in images:
            target = self.truth[pixels(image)]
            boxes, area = target["boxes"].clone(), target["area"]  # COCO sizes by the object's area
            medium = (area >= 32**2) & (area < 96**2)
            boxes[medium, 0::2] += SHIFT * (boxes[medium, 2] - boxes[medium, 0])[:, None]
            kept = boxes
            decoys = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(100, 4)
            answers.append(
                {
                    "boxes": torch.cat([decoys, kept]),
                    "scores": torch.cat([torch.ones(100), torch.full((len(kept),), 0.5)]),
                }
            )
        return answers


def test_proposal_recall_by_size_and_by_number_of_proposals(dataset):
    areas = torch.tensor([a["area"] for a in dataset.coco.dataset["annotations"]])
    small, medium = int((areas < 32**2).sum()), int(((areas >= 32**2) & (areas < 96**2)).sum())
    assert small and medium and len(areas) > small + medium  # every size is there
    recall = proposal_recall(SizeOracle(dataset), dataset, batch_size=4, progress=False)
    assert recall["AR@100"] == 0.0 and recall["AR_s@100"] == 0.0  # the decoys fill the top 100
    assert recall["AR_s@1000"] == pytest.approx(1.0) and recall["AR_m@1000"] == pytest.approx(0.5)
    assert recall["AR_l@1000"] == pytest.approx(1.0)
    large = len(areas) - small - medium
    assert recall["AR@1000"] == pytest.approx((small + 0.5 * medium + large) / len(areas))


def test_a_size_without_objects_reads_minus_one(dataset):
    """pycocotools' -1: no ground truth of that size among the images evaluated."""
    first = dataset.coco.dataset["images"][0]["id"]
    areas = [a["area"] for a in dataset.coco.dataset["annotations"] if a["image_id"] == first]
    recall = proposal_recall(Oracle(dataset), dataset, max_images=1, progress=False)
    assert recall["AR_l@1000"] == (-1.0 if max(areas) < 96**2 else pytest.approx(1.0))
    assert recall["AR_s@1000"] == (-1.0 if min(areas) >= 32**2 else pytest.approx(1.0))


@pytest.mark.parametrize(
    "max_images, batch_size, message",
    [
        (None, 0, r"^the evaluation batch size must be >= 1, got 0\.$"),
        (0, 1, r"^max_images must be >= 1 \(or None for all\), got 0\.$"),
    ],
)
def test_bad_evaluation_settings_are_named(dataset, max_images, batch_size, message):
    with pytest.raises(FpnlabError, match=message):
        coco_metrics(Oracle(dataset), dataset, max_images=max_images, batch_size=batch_size, progress=None)
    assert coco_metrics(Oracle(dataset), dataset, max_images=1, batch_size=1, progress=None)["AP50"] == pytest.approx(
        1.0
    )


def test_without_bars_evaluation_prints_one_line_per_phase(dataset, capsys):
    coco_metrics(Oracle(dataset), dataset, max_images=3, progress=False)
    proposal_recall(Oracle(dataset), dataset, max_images=2, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert [lines[0], lines[2]] == ["eval: 3 images ...", "proposals: 2 images ..."]
    assert lines[1].startswith("eval: done in ") and lines[3].startswith("proposals: done in ")


def test_by_default_evaluation_shows_a_bar_over_every_image(dataset, capsys):
    coco_metrics(Oracle(dataset), dataset)
    assert re.search(rf"eval: 100%.*\b{len(dataset)}/{len(dataset)} \[", capsys.readouterr().err)


def test_a_checkpoint_is_scored_on_the_data_it_was_trained_on(tmp_path):
    record = evaluate_checkpoint(DEMO_CHECKPOINT, max_images=2, proposals=True, levels=True, progress=None)
    model, data = load_model(DEMO_CHECKPOINT), load_split("shapes-mini", "val")
    assert {k: record[k] for k in ("checkpoint", "dataset", "split", "images")} == {
        "checkpoint": str(DEMO_CHECKPOINT),
        "dataset": "shapes-mini",
        "split": "val",
        "images": 2,
    }
    assert record["coco_metrics"] == coco_metrics(model, data, max_images=2, progress=None)
    assert record["proposal_recall"] == proposal_recall(model, data, max_images=2, progress=None)
    assert record["level_statistics"] == level_statistics(model, data, max_images=2, progress=None)
    plain = evaluate_checkpoint(DEMO_CHECKPOINT, max_images=1, split="train", progress=None)
    assert plain["split"] == "train" and set(plain) == {"checkpoint", "dataset", "split", "images", "coco_metrics"}
    checkpoint = load_checkpoint(DEMO_CHECKPOINT)
    save_checkpoint(tmp_path / "old.pt", {k: v for k, v in checkpoint.items() if k != "train_config"})
    assert evaluate_checkpoint(tmp_path / "old.pt", max_images=1, progress=None)["dataset"] == "shapes-mini"


def test_a_checkpoint_of_other_classes_is_refused_naming_both(tmp_path):
    checkpoint = load_checkpoint(DEMO_CHECKPOINT)
    renamed = [f"{name}-like" for name in checkpoint["categories"]]
    save_checkpoint(tmp_path / "other.pt", {**checkpoint, "categories": renamed})
    with pytest.raises(FpnlabError) as err:
        evaluate_checkpoint(tmp_path / "other.pt", dataset="shapes-mini", progress=None)
    assert str(err.value) == (
        f"checkpoint {tmp_path / 'other.pt'} detects {', '.join(renamed)} but dataset "
        f"shapes-mini has {', '.join(CATEGORIES)} (label by label); its scores would be wrong, so it was not scored."
    )


def test_annotations_without_area_and_iscrowd_score_as_pycocotools_scores_them_filled_in(tmp_path):
    """pycocotools' COCOeval reads `area` and `iscrowd` of every ground-truth box; a file without them scores
    exactly as pycocotools scores the same file with area = w x h and iscrowd = 0 written in (loadRes's rule)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from fpnlab.data import CocoDetection

    root = write_sparse_id_dataset(tmp_path / "data")
    data = json.loads((root / "val.json").read_text())
    for ann in data["annotations"]:
        ann.pop("area"), ann.pop("iscrowd")
    (root / "bare.json").write_text(json.dumps(data))
    bare = CocoDetection(root / "val", root / "bare.json")
    ours = coco_metrics(Oracle(bare, shift=SHIFT), bare, progress=None)

    filled = {
        **data,
        "annotations": [{**a, "area": a["bbox"][2] * a["bbox"][3], "iscrowd": 0} for a in data["annotations"]],
    }
    (root / "filled.json").write_text(json.dumps(filled))
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
         "bbox": [a["bbox"][0] + SHIFT * a["bbox"][2], a["bbox"][1], a["bbox"][2], a["bbox"][3]]}
        for a in filled["annotations"] if a["bbox"][2] > 0 and a["bbox"][3] > 0
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(root / "filled.json"))
        evaluator = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    assert list(ours.values()) == pytest.approx(list(evaluator.stats), abs=1e-6)
    assert ours["AP50"] == 1.0 and ours["AP"] < 1.0  # IoU 0.724: every box at 0.5, not at 0.75 and above
