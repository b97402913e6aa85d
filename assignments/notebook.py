"""The student's notebook, notebooks/fpn_assignment.ipynb: one section per unit, the capstone, the analysis.

Each unit's section says what to write and where (the function's docstring stays in the code, next to
the markers), then `check("<unit>")` runs its visible tests. The sections follow the detector's stages
and the notebook section numbers of fpnlab.grading.UNITS; the build writes the notebook from this module,
so the units, their order and the submission's files have one source.
"""

from __future__ import annotations

from typing import Any

import nbformat

from assignments.config import Points
from fpnlab.grading import UNITS

STAGES = {  # stage number (= lab notebook number) -> (title, what it is for)
    "0": (
        "Boxes",
        "Every stage measures, moves and prunes boxes (x1, y1, x2, y2): area, IoU, the box coder of "
        "Faster R-CNN's Eq. 2 and non-maximum suppression. Lab notebooks 00 and 04 show them at work.",
    ),
    "1": (
        "The bottom-up pathway",
        "The ResNet gives C2..C5 at strides 4..32 (FPN paper, Sec. 3; lab notebook 01).",
    ),
    "2": (
        "The top-down pathway and lateral connections",
        "Upsampling and lateral 1x1 convolutions turn C2..C5 into P2..P6 (Sec. 3, Fig. 3; lab notebook 02).",
    ),
    "3": (
        "Anchors",
        "One anchor size per level, three ratios, on every cell of the level's grid (Sec. 4.1; lab notebook 03).",
    ),
    "4": (
        "The RPN",
        "One head scores and refines every anchor of every level; training matches anchors to "
        "objects, samples 256 and sums two losses; inference keeps the best boxes (lab notebook 04).",
    ),
    "5": (
        "ROIs on the pyramid",
        "Eq. 1 picks the level that pools a ROI; RoIAlign crops a fixed 7 x 7 from it (Sec. 4.2; lab notebook 05).",
    ),
    "6": (
        "The Fast R-CNN head",
        "Two losses to train the head, per-class NMS to turn its outputs into detections (lab notebook 06).",
    ),
    "9": (
        "Masks",
        "Mask R-CNN's head predicts a 28 x 28 mask per ROI and class: its targets are the ground truth seen "
        "through each ROI, its loss reads one class's channel, and its masks go back into the image at their "
        "boxes (lab notebook 09).",
    ),
}
TASKS = {  # unit -> what to write, in a few words (the docstring in the code has the contract)
    "area": "(x2 - x1) * (y2 - y1) of each box; half-precision boxes give float32 areas (`upcast`).",
    "iou": "The (N, M) matrix of intersection over union, broadcasting boxes1[:, None] against boxes2[None].",
    "encode": "Eq. 2: centre offsets in units of the proposal's size, log size ratios, times the weights.",
    "decode": "The inverse of `encode` for K groups of 4 deltas; clamp dw, dh at `self.bbox_xform_clip`.",
    "nms": "Greedy: visit boxes from the best score down (a stable sort), drop those overlapping a kept one "
    "by IoU > threshold. A loop over boxes is fine.",
    "backbone": "The stem (conv1, bn1, relu, maxpool), then layer1..layer4; return C2..C5 in an OrderedDict.",
    "fpn": "M5 = lateral(C5); M_k = upsample(M_{k+1}) + lateral(C_k), coarse to fine; P_k = smooth(M_k); P6 = "
    "stride-2 max-pool of P5. Honour `self.top_down`, `self.use_lateral`, `self._merged` and `out_levels` "
    "(Table 1 rows d, e, f).",
    "cell_anchors": "Size s at ratio r (height / width): w = s / sqrt(r), h = s * sqrt(r), centred on (0, 0), "
    "ratio-major, rounded.",
    "grid_anchors": "Shift the cell's anchors to every grid point (x * stride, y * stride), row by row, the A "
    "anchors of a point together; stride = image size // feature size, per axis.",
    "flatten_objectness": "(B, A, H, W) -> (B, H*W*A) in the anchors' order.",
    "flatten_deltas": "(B, 4A, H, W) -> (B, H*W*A, 4); the 4 deltas of anchor a are channels 4a..4a+3.",
    "matcher": "Best gt per prediction and a label: 1 at IoU >= `high_threshold`, 0 below `low_threshold`, -1 "
    "between; with low-quality matches, each gt's best prediction(s) become positives too. Return a `Match`. "
    "Mind empty inputs.",
    "sampler": "Up to batch * fraction positives (labels >= 1), the rest negatives (0), uniformly at random "
    "without replacement (`_random_subset`).",
    "filter_image": "Clip, drop boxes thinner than MIN_PROPOSAL_SIZE and scores below `score_thresh`, NMS within "
    "each level (`batched_nms`), keep the best `top_n`.",
    "rpn_loss": "Per image: `sample_targets` with the matcher, sampler and box coder; then binary cross-entropy "
    "on the sampled logits and smooth L1 (beta SMOOTH_L1_BETA) on the positives' deltas, both summed "
    "and divided by the number sampled.",
    "assign_levels": "Eq. 1 with the LEVEL_EPS of torchvision before the floor, clamped, as int64.",
    "roi_align": "Sample i of bin p sits at start + (p + (i + 0.5) / g) * bin size; weights of its two "
    "neighbouring pixels, times 1 / g; samples more than a pixel off the map weigh 0.",
    "pooler": "Assign each proposal a level (`self.levels_of`), pool each level's proposals (`self._pool` with "
    "`self._scale`), in the order of the concatenated proposals; no proposals give (0, C, S, S).",
    "roi_loss": "Cross-entropy over classes; smooth L1 on the deltas of each positive's own class; both divided "
    "by the number of ROIs.",
    "detect_image": "Clip; drop class 0, scores <= `score_thresh` and boxes thinner than MIN_DETECTION_SIZE; NMS "
    "per class; keep `detections_per_img`, best first.",
    "mask_targets": "RoIAlign each ROI's matched mask (the gt index is the ROI's batch index) at size x size, "
    "spatial scale 1, `aligned` as given: `roi_align` of fpnlab.model.poolers.",
    "mask_loss": "Binary cross-entropy with logits on each ROI's own class channel, averaged over every pixel of "
    "every ROI; with no ROI, 0 that still has a gradient (`mask_logits.sum() * 0`).",
    "paste_masks": "Pad by `padding`, grow the boxes by (M + 2 padding) / M (`expand_boxes`), to int64; per mask "
    "resize bilinearly to the box's (x2 - x1 + 1) x (y2 - y1 + 1) pixels and copy what lies inside the image.",
}
SETUP = """\
# Finds your copy of fpnlab: the folder above this notebook, or on Colab the copy in your Drive (STUDENT.md).
import pathlib, sys
DRIVE = pathlib.Path.cwd() / "drive"  # Colab: /content/drive, where your Google Drive is mounted
RELEASE = DRIVE / "MyDrive" / "fpn-assignment"  # Colab only: where the release is in your Google Drive
if "google.colab" in sys.modules:
    from google.colab import drive
    drive.mount(str(DRIVE))
here = pathlib.Path.cwd()
ROOT = next((p for p in (here.parent, here, pathlib.Path(RELEASE))
             if (p / "fpnlab" / "grading" / "registry.py").is_file()), None)
if ROOT is None:
    raise FileNotFoundError(f"no fpnlab/ above {here} nor in {RELEASE}: see STUDENT.md")
sys.path.insert(0, str(ROOT))
try:
    import otter  # the tests are otter-grader test files
except ImportError:  # installed without replacing what is here (on Colab: its ipywidgets 7, which otter would upgrade)
    from fpnlab.requirements import install_keeping
    install_keeping("otter-grader", "otter-grader>=7,<8")
%load_ext autoreload
%autoreload 2
from fpnlab.grading import check"""
CAPSTONE = """\
from fpnlab import grading as units
from fpnlab.engine.checkpoint import export_model
from fpnlab.engine.presets import get_preset
from fpnlab.engine.loop import train

with units.strict():  # your units only: no torchvision fallback
    result = train(get_preset("cpu"), ROOT / "runs" / "capstone")
export_model(result.checkpoint, ROOT / "{model}")
print("AP50 on shapes-mini val:", result.metrics.get("AP50"))
check("capstone")"""
SUBMIT = """\
import zipfile
files = {files}
with zipfile.ZipFile(ROOT / "submission.zip", "w", zipfile.ZIP_DEFLATED) as archive:
    for name in files:
        if (ROOT / name).is_file():
            archive.write(ROOT / name, name)
        else:
            print("missing:", name)
print("upload", ROOT / "submission.zip", "to Gradescope")"""


def markdown(text: str, **metadata: Any) -> nbformat.NotebookNode:
    """A markdown cell; `tags=[...]` marks one for the autograder (the analysis)."""
    return nbformat.v4.new_markdown_cell(text, metadata=metadata)


def code(text: str) -> nbformat.NotebookNode:
    """A code cell, without outputs."""
    return nbformat.v4.new_code_cell(text)


def intro(points: Points) -> str:
    """The notebook's first cell: how the assignment works and what it is worth."""
    return f"""# Build the Feature Pyramid Network yourself

You write the {len(UNITS)} functions that make fpnlab's detector, one *unit* at a time, in your copy of the
package (`../fpnlab/*.py`). Each unit's code goes between its markers, `# BEGIN UNIT <name>` and
`# END UNIT <name>`: only those lines are graded, so keep your helpers inside them and add no imports.

* `check("<unit>")` runs the unit's visible tests on your files as they are on disk, in a fresh process,
  as the grader does, and says what is wrong; the graded tests add hidden cases (other sizes, float64,
  empty inputs, ties, values at a threshold, boxes off the image).
* A unit you have not done yet runs torchvision's equivalent and says so once, so the later sections work;
  checks and grading never use it. Calling torchvision or the lab's own version of the same computation
  in a unit's code costs the unit its points (README.md lists what a unit may use).
* Points: {sum(points.units.values()):g} for the units, {points.capstone.points + points.training.points:g}
  for the capstone (your trained model's AP50, and a short training run of your units), {points.analysis:g}
  for the written analysis (graded by hand with `rubric.md`)."""


def unit_cells(unit: str) -> list[nbformat.NotebookNode]:
    """A unit's section: where it is and what to write, then its check."""
    found = UNITS[unit]
    number, title = found.section.split(" ", 1)
    return [
        markdown(f"### {number} {title}: `{found.function}` in `fpnlab/{found.module}`\n\n{TASKS[unit]}"),
        code(f'check("{unit}")'),
    ]


def capstone_cells(points: Points, model: str) -> list[nbformat.NotebookNode]:
    """Train the cpu preset with the student's units only, export `model`, check it."""
    text = (
        f"## 7. Capstone: train your detector\n\nThe cpu preset's detector, built from *your* units, trained on "
        f"shapes-mini (about 4 minutes on 2 CPU cores). It must reach AP50 >= {points.capstone.ap50:g} on "
        f"shapes-mini val ({points.capstone.points:g} points). Check every unit first: a unit that is not "
        f"done stops the training, since no fallback runs here."
    )
    probe = (
        f"The grader also trains a small detector of your units for {points.training.iterations} iterations on "
        f"{points.training.images} images ({points.training.points:g} points): every part must get finite gradients "
        "and the loss must fall as the lab's does. About a minute:"
    )
    return [markdown(text), code(CAPSTONE.format(model=model)), markdown(probe), code('check("training")')]


def analysis_cells() -> list[nbformat.NotebookNode]:
    """The questions, the lab's ablation table, and the answer cell tagged "analysis"."""
    prompt = (
        "## 8. Ablation analysis (graded by hand)\n\nThe table below is the lab's Table 1 on a CPU: the RPN's "
        "average recall with the full FPN and without each of its parts, beside the paper's numbers. In "
        "150-300 words, explain (1) what the top-down pathway and the lateral connections each add, with "
        "the numbers, (2) why small objects gain most, in terms of resolution and semantics of each level, "
        "(3) which line of your `FPN.forward` each ablation switches off, and (4) one limit of this "
        "measurement. `rubric.md` lists what is graded."
    )
    table = (
        "from fpnlab.ablation.report import format_ablation, load_ablation\n"
        'print(format_ablation(load_ablation("rpn", folder=ROOT / "results")))'
    )
    answer = "### Your analysis\n\nWrite your analysis here."
    return [markdown(prompt), code(table), markdown(answer, tags=["analysis"])]


def assignment_notebook(points: Points, submitted: tuple[str, ...], model: str) -> nbformat.NotebookNode:
    """The whole notebook: intro, setup, a section per stage and unit, capstone, analysis, submission."""
    cells = [markdown(intro(points)), code(SETUP)]
    for stage, (title, text) in STAGES.items():
        cells.append(markdown(f"## {stage}. {title}\n\n{text}"))
        for unit in (u for u, found in UNITS.items() if found.section.startswith(f"{stage}.")):
            cells += unit_cells(unit)
    cells += capstone_cells(points, model) + analysis_cells()
    cells += [
        markdown(
            "## 9. Submit\n\nZip your units, this notebook (save it first) and your capstone model, "
            "then upload `submission.zip` to Gradescope as it is."
        ),
        code(SUBMIT.format(files=repr(list(submitted)))),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata.update(kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"})
    return notebook
