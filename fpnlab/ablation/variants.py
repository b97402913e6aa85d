"""The paper's ablations (FPN paper, Sec. 5.1, Tables 1-3) as typed changes of a detector's settings.

Seven variants, the rows (a)..(f) of the paper's tables; each changes the neck (or head) of the same model:

    (a) c4            single-scale baseline on C4, all anchor sizes on it
    (a) c4_res5       the same, with the ResNet's conv5 stage as its ROI head (Table 3's row a;
                      detector stage only: the RPN stage builds no head, so its row is c4's)
    (b) c5            single-scale baseline on C5
    (c) fpn           the full FPN on the preset's levels (P2..P6 on a GPU, P2..P5 at the CPU scale)
    (d) no_top_down   bottom-up pyramid: lateral 1x1 + 3x3 per level, no top-down pathway
    (e) no_lateral    top-down pathway without lateral connections
    (f) p2_only       the full FPN, but only its finest level P2 (all anchor sizes on it)

and two stages, scored as the paper scores them:

    rpn        RPN-only models scored by proposal recall: AR@100, AR@1k, AR_s/m/l at 1k (Table 1)
    detector   the whole Faster R-CNN scored by COCO AP: AP@0.5, AP, AP_s/m/l (Tables 2 and 3)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fpnlab.ablation.paper import PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3
from fpnlab.errors import FpnlabError
from fpnlab.model.config import DetectorConfig, ProposalCounts
from fpnlab.overrides import update


@dataclass(frozen=True)
class Variant:
    """One row of the paper's tables: a label and the typed changes it makes to the shared model's settings.

    `changes` are DetectorConfig fields as fpnlab.overrides takes them (checked by name and type when
    applied), so a new row is one more entry in VARIANTS:

        Variant("(d) no top-down", {"top_down": False}).apply(CPU_MODEL).top_down   # False
    """

    label: str  # "(c) FPN"
    changes: dict[str, Any] = field(default_factory=dict)

    def apply(self, model: DetectorConfig) -> DetectorConfig:
        """`model` with this row's changes. A single-level row ranks as many candidates before NMS as the
        pyramid does over all its levels (Detectron's C4 RPN likewise keeps 6000 at test time), so that
        AR@1k is not capped by a smaller pool."""
        changed = update(model, self.changes)
        if len(changed.rpn_levels()) == 1 and len(model.rpn_levels()) > 1:
            scale = len(model.rpn_levels())
            train, test = model.rpn.train, model.rpn.test
            counts = {
                "train": ProposalCounts(train.pre_nms_top_n * scale, train.post_nms_top_n),
                "test": ProposalCounts(test.pre_nms_top_n * scale, test.post_nms_top_n),
            }
            changed = dataclasses.replace(changed, rpn=dataclasses.replace(model.rpn, **counts))
        return changed


VARIANTS: dict[str, Variant] = {
    "c4": Variant("(a) C4", {"neck": "c4"}),
    "c4_res5": Variant("(a) C4 + conv5", {"neck": "c4", "box": {"head": "res5"}}),
    "c5": Variant("(b) C5", {"neck": "c5"}),
    "fpn": Variant("(c) FPN"),
    "no_top_down": Variant("(d) no top-down", {"top_down": False}),
    "no_lateral": Variant("(e) no lateral", {"lateral": False}),
    "p2_only": Variant("(f) P2 only", {"levels": ("p2",)}),
}
ROW_LABELS = {name: variant.label for name, variant in VARIANTS.items()}
MAIN_COMPARISON = ("fpn", "no_top_down", "no_lateral")  # the rows to run with >= 3 seeds
REFERENCE = "fpn"  # every other variant is compared with this one


@dataclass(frozen=True)
class Stage:
    """What one stage trains (a change of the shared model) and which metrics score it."""

    model: Callable[[DetectorConfig], DetectorConfig]
    metrics: tuple[str, ...]  # as named by fpnlab.engine.evaluate, in the paper's column order
    size_metrics: tuple[str, ...]  # the small / medium / large columns, for the figure
    paper: dict[str, dict[str, float]]
    paper_source: str
    variants: tuple[str, ...]  # its rows, in table order: what `--variants all` runs


def _rpn_only(model: DetectorConfig) -> DetectorConfig:
    """The RPN alone, keeping 1000 proposals per image at test time so that AR@1k means what it means
    in the paper."""
    counts = ProposalCounts(1000, 1000)
    return dataclasses.replace(model, rpn_only=True, rpn=dataclasses.replace(model.rpn, test=counts))


STAGES: dict[str, Stage] = {
    "rpn": Stage(
        model=_rpn_only,
        metrics=("AR@100", "AR_s@100", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000"),
        size_metrics=("AR_s@1000", "AR_m@1000", "AR_l@1000"),
        paper=PAPER_TABLE1,
        paper_source="FPN paper Table 1 (RPN, ResNet-50, COCO minival)",
        variants=tuple(name for name in VARIANTS if name != "c4_res5"),  # no box head: c4_res5's RPN is c4's
    ),
    "detector": Stage(
        model=lambda model: dataclasses.replace(model, rpn_only=False),
        metrics=("AP50", "AP", "AP_s", "AP_m", "AP_l"),
        size_metrics=("AP_s", "AP_m", "AP_l"),
        paper={**PAPER_TABLE2, **PAPER_TABLE3},
        paper_source="FPN paper Table 3 (Faster R-CNN) for rows a-c, Table 2 (Fast R-CNN on FPN proposals) "
        "for rows d-f, which Table 3 lacks",
        variants=tuple(VARIANTS),
    ),
}


def check_names(stage: str, variants: Sequence[str], seeds: Sequence[int] = ()) -> None:
    """FpnlabError for an unknown stage or variant name, a variant that is no row of the stage, or a variant
    or seed given twice (a repeated seed would count one run twice: n = 2 and a spread of 0)."""
    if stage not in STAGES:
        raise FpnlabError(f"unknown ablation stage {stage!r}; choose one of {', '.join(STAGES)}.")
    choices = ", ".join(STAGES[stage].variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise FpnlabError(f"unknown ablation variant {unknown[0]!r}; choose from {choices}.")
    elsewhere = [v for v in variants if v not in STAGES[stage].variants]
    if elsewhere:
        raise FpnlabError(
            f"ablation variant {elsewhere[0]!r} is not a row of the {stage} stage; choose from {choices}."
        )
    for what, values in (("variant", list(variants)), ("seed", list(seeds))):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise FpnlabError(
                f"ablation {what} {', '.join(repeated)} is given more than once; name each {what} once "
                f"(a repeated {what} would count one run twice)."
            )


def result_name(stage: str, preset: str) -> str:
    """ablation_<stage> for the gpu preset (the lab's reference figures), ablation_<stage>_<preset> otherwise."""
    return f"ablation_{stage}" if preset == "gpu" else f"ablation_{stage}_{preset}"
