"""How close each submitted unit is to the lab's reference and to torchvision's source (instructors only).

    python -m assignments.similarity submissions/*.zip --out similarity.md

The public lab holds the reference solution, and torchvision's source is a pip install away: a unit
copied from either is worth a look. For each unit and submission this lists the similarity (0..1, the
ratio of difflib's SequenceMatcher) of the unit's tokens, names normalised away, to the reference's and to
torchvision's equivalent, highest first. It is a list to read, never a grade: short units look alike
whoever writes them, and nothing here changes a score.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import io
import sys
import tempfile
import textwrap
import tokenize
from pathlib import Path

import torchvision
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection import anchor_utils, roi_heads, rpn
from torchvision.ops import feature_pyramid_network, poolers

from assignments.config import REPO
from assignments.submission import reduce_submission
from fpnlab.grading import UNITS, regions

TORCHVISION = {  # unit -> torchvision's Python code for the same computation (nms and roi_align are C++ kernels)
    "area": [torchvision.ops.boxes.box_area],
    "iou": [torchvision.ops.boxes.box_iou, torchvision.ops.boxes._box_inter_union],
    "encode": [det_utils.BoxCoder.encode_single, det_utils.encode_boxes],
    "decode": [det_utils.BoxCoder.decode_single],
    "backbone": [IntermediateLayerGetter.forward],
    "fpn": [feature_pyramid_network.FeaturePyramidNetwork.forward],
    "cell_anchors": [anchor_utils.AnchorGenerator.generate_anchors],
    "grid_anchors": [anchor_utils.AnchorGenerator.grid_anchors],
    "flatten_objectness": [rpn.permute_and_flatten],
    "flatten_deltas": [rpn.permute_and_flatten],
    "matcher": [det_utils.Matcher.__call__, det_utils.Matcher.set_low_quality_matches_],
    "sampler": [det_utils.BalancedPositiveNegativeSampler.__call__],
    "filter_image": [rpn.RegionProposalNetwork.filter_proposals],
    "rpn_loss": [rpn.RegionProposalNetwork.compute_loss, rpn.RegionProposalNetwork.assign_targets_to_anchors],
    "assign_levels": [poolers.LevelMapper.__call__],
    "pooler": [poolers._multiscale_roi_align],
    "roi_loss": [roi_heads.fastrcnn_loss],
    "detect_image": [roi_heads.RoIHeads.postprocess_detections],
    "mask_targets": [roi_heads.project_masks_on_boxes],
    "mask_loss": [roi_heads.maskrcnn_loss],
    "paste_masks": [roi_heads.paste_masks_in_image, roi_heads.paste_mask_in_image, roi_heads.expand_boxes],
}


def tokens(code: str) -> list[str]:
    """The code's tokens, every name as NAME (renaming changes nothing), comments and layout left out."""
    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(textwrap.dedent(code)).readline):
            if token.type == tokenize.NAME:
                found.append("NAME")
            elif token.type in (tokenize.OP, tokenize.NUMBER, tokenize.STRING):
                found.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return found


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, tokens(a), tokens(b), autojunk=False).ratio()


def unit_code(source: str, unit: str) -> str:
    """The code between `unit`'s markers in a module's text ("" when they are missing)."""
    try:
        found = regions(source)
    except Exception:  # broken markers: nothing to compare
        return ""
    if unit not in found:
        return ""
    begin, end = found[unit]
    return "\n".join(source.splitlines()[begin + 1 : end])


def references(unit: str) -> tuple[str, str]:
    """The lab's code of `unit` and torchvision's source of the same computation ("" where there is none)."""
    lab = unit_code((REPO / "fpnlab" / UNITS[unit].module).read_text(encoding="utf-8"), unit)
    theirs = "\n".join(textwrap.dedent(inspect.getsource(f)) for f in TORCHVISION.get(unit, []))
    return lab, theirs


def report(submissions: list[Path]) -> str:
    """The markdown report: one table per unit, submissions by their highest similarity."""
    codes: dict[str, dict[str, str]] = {}
    for path in submissions:
        with tempfile.TemporaryDirectory() as folder:
            upload = path if path.is_dir() else Path(folder)
            if not path.is_dir():
                (upload / path.name).write_bytes(path.read_bytes())
            files = reduce_submission(upload).files
        codes[path.stem] = {
            unit: unit_code(files.get(f"fpnlab/{found.module}", b"").decode("utf-8", "replace"), unit)
            for unit, found in UNITS.items()
        }
    lines = ["# Similarity of each unit to the lab's reference and to torchvision (to read, never a grade)", ""]
    for unit in UNITS:
        lab, theirs = references(unit)
        rows = sorted(
            (
                (similarity(code[unit], lab), similarity(code[unit], theirs) if theirs else 0.0, name)
                for name, code in codes.items()
            ),
            reverse=True,
        )
        lines += [f"## {unit}", "", "| submission | vs the lab | vs torchvision |", "|---|---|---|"]
        lines += [f"| {name} | {lab_ratio:.2f} | {tv_ratio:.2f} |" for lab_ratio, tv_ratio, name in rows]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assignments.similarity", description=__doc__.splitlines()[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="submission zips (or unpacked folders)")
    parser.add_argument("--out", type=Path, help="write the report here (it must not exist)")
    args = parser.parse_args(argv)
    text = report(args.submissions)
    if args.out is None:
        print(text)
    elif args.out.exists():
        print(f"error: {args.out} exists; pick another --out.", file=sys.stderr)
        return 2
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
