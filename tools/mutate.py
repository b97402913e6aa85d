"""Mutation testing, one module against its own tests: `make mutate MODULE=model/levels`
(python tools/mutate.py model/levels).

mutmut (3.x) changes the module in small ways (a `<` becomes `<=`, a constant changes, a line goes)
and runs the module's own test files against each change; a change no test notices is a *surviving*
mutant: a hole in the tests, or a change that cannot alter behaviour (equivalent). The run happens in a
scratch copy of the repository, so the checkout is never touched, and the counts are written to
results/mutation.json (merged with the other modules' counts), with the surviving mutants' names.

Survivors judged equivalent are excluded from the kill rate, each with its reason: those that only change
the device a tensor is made on, or a line that runs only with CUDA, are recognised from the change itself
(the test machines have no GPU); the others are listed, with the reason, in EQUIVALENT below. Each
module's line in results/mutation.json says how long its run took. After editing EQUIVALENT, a run kept
with KEEP_SCRATCH=1 is judged again without running mutmut: python tools/mutate.py MODULE SCRATCH_FOLDER.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from fpnlab.results import read_result, write_result

ROOT = Path(__file__).resolve().parent.parent
# mutmut's verdicts that mean the tests did not pass under the mutant: a failing test; tests past mutmut's
# time limit; the test process killed by a signal ("suspicious", "segfault": e.g. a mutant that leaves
# SIGTERM's default action while a test sends SIGTERM); a KeyboardInterrupt the mutant raised (pytest's exit
# code 2, which mutmut calls "check was interrupted by user")
DETECTED = ("killed", "timeout", "suspicious", "segfault", "check was interrupted by user")
# module (its path under fpnlab/, without .py) -> the test files that are its own tests
TESTS = {
    "model/levels": ["tests/test_levels.py"],
    "model/anchors": ["tests/test_anchors.py"],
    "model/matching": ["tests/test_matching.py"],
    "model/fpn": ["tests/test_fpn.py"],
    "model/boxes": ["tests/test_boxes.py"],
    "model/poolers": ["tests/test_poolers.py"],
    "model/rpn": ["tests/test_rpn.py"],
    "model/roi_heads": ["tests/test_roi_heads.py"],
    "model/res5_head": ["tests/test_res5_head.py"],
    "model/masks": ["tests/test_mask_geometry.py"],
    "overrides": ["tests/test_config.py"],
    "engine/presets": ["tests/test_config.py"],
    "model/config": ["tests/test_config.py", "tests/test_checkpoint.py"],
    "engine/checkpoint": ["tests/test_checkpoint.py"],
    "engine/state": ["tests/test_state.py", "tests/test_train.py", "tests/test_checkpoint.py"],
    "engine/loop": ["tests/test_train.py"],
    "engine/runlog": ["tests/test_runlog.py", "tests/test_train.py"],
    "engine/stopping": ["tests/test_stopping.py", "tests/test_train.py"],
    "engine/evaluate": ["tests/test_evaluate.py"],
    "ablation/runner": ["tests/test_ablation_runner.py", "tests/test_ablation.py"],
    "ablation/report": ["tests/test_ablation.py", "tests/test_ablation_runner.py"],
    "ablation/variants": ["tests/test_ablation.py", "tests/test_ablation_runner.py"],
}
# "module.function__mutmut_N": why that change cannot alter what the module computes. mutmut numbers the
# mutants of a function in order, so after a function changes, check its entries against the changes that
# results/mutation.json prints beside each reason.
_EPS_DTYPE = (
    "the epsilon is a 0-dim tensor, which never changes the result's dtype (type promotion); in "
    "float32 instead of k's dtype, 1e-6 moves by 3e-14, far below any level boundary's spacing"
)
DEVICE_ONLY = (
    "only the device a tensor is made on changes (device=None is the CPU): visible with a second "
    "device such as a GPU, which the test machines lack"
)
_MESHGRID = "torch.meshgrid's default indexing is 'ij' (torch only warns that the argument will be required)"
_CELL_DTYPE = (
    "anchor sizes are ints and ratios Python floats: torch.tensor makes them int64 and float32 (the "
    "default dtype), and the division below promotes both to float32, the same values"
)
_FULL_INT = "torch.full infers int64 from the integer fill value, the dtype the line asked for"
_NMS_BRANCH = (
    "chooses between batched_nms's two implementations, which return the same indices (both are "
    "tested against torchvision, at 600 and 2500 boxes): only the speed changes"
)
_FLOAT_MASK = "a float mask set to 1.0 selects the same indices in torch.where as a bool mask set to True"
_OFFSET = (
    "the groups stay disjoint: an offset of -(max + 1) or (max + 2) per group separates them as "
    "(max + 1) does, and int groups times a float offset promote to float anyway"
)
_GT_IN_PROPOSALS = (
    "RoIHeads adds every gt box to the proposals, so each gt's best IoU is 1 >= fg_iou_thresh and "
    "the low-quality rule never adds a match"
)
CUDA_ONLY = "a line that runs only where CUDA is available; the test machines have no GPU"
_GLOBAL = (
    "torch's refusal of a pickled class says both 'Unsupported global' and 'GLOBAL' (torch 2.14); either "
    "test finds it, the two are there for torch versions that print only one"
)
_MAP_LOCATION = "map_location matters only for a checkpoint saved on a GPU; the tests save theirs on the CPU"
_WEIGHTS_ONLY = "torch >= 2.6 loads with weights_only=True by default (the pickled-class test passes either way)"
_SAME_VALUES = "a dtype change that keeps every value (uint32 keys and Python ints fit in int64 and float64)"
_EXPORT_MARKER = (
    "the exported dict is written as {format, version, **checkpoint}: the loaded checkpoint's own "
    "format and version (upgraded to 2) are the same values"
)
_GONE_TMP = "a missing temporary file's FileNotFoundError is an OSError, which suppress(OSError) swallows"
_CPU_AMP = "mixed precision (autocast, the fp16 GradScaler) is on only on CUDA; on the CPU amp_dtype is None"
EQUIVALENT: dict[str, str] = {
    "fpnlab.ablation.variants.xǁVariantǁapply__mutmut_9": (
        "`> 1` -> `>= 1` on the model's level count: with one level the scale is 1, and counts times 1 are the "
        "same counts (the one-level case is tested)"
    ),
    "fpnlab.model.levels.x_assign_levels__mutmut_23": _EPS_DTYPE,
    "fpnlab.model.levels.x_assign_levels__mutmut_25": _EPS_DTYPE,
    "fpnlab.model.anchors.xǁAnchorGeneratorǁ_level_anchors__mutmut_19": _MESHGRID,
    "fpnlab.model.anchors.xǁAnchorGeneratorǁ_level_anchors__mutmut_22": _MESHGRID,
    "fpnlab.model.anchors.xǁAnchorGeneratorǁcell_anchors__mutmut_3": _CELL_DTYPE,
    "fpnlab.model.anchors.xǁAnchorGeneratorǁcell_anchors__mutmut_5": _CELL_DTYPE,
    "fpnlab.model.anchors.xǁAnchorGeneratorǁcell_anchors__mutmut_8": _CELL_DTYPE,
    "fpnlab.model.anchors.xǁAnchorGeneratorǁcell_anchors__mutmut_10": _CELL_DTYPE,
    "fpnlab.model.anchors.xǁAnchorGeneratorǁanchor_levels__mutmut_11": (
        "torch.repeat_interleave(counts) is defined as repeat_interleave(arange(len(counts)), counts)"
    ),
    "fpnlab.model.anchors.xǁAnchorGeneratorǁgrid_anchors__mutmut_29": "popitem(last=None): None is falsy, as False",
    "fpnlab.model.matching.xǁMatcherǁ__call____mutmut_10": _FULL_INT,
    "fpnlab.model.matching.xǁMatcherǁ__call____mutmut_14": _FULL_INT,
    "fpnlab.model.matching.xǁMatcherǁ__call____mutmut_22": (
        "an IoU equal to low_threshold, marked background by the "
        "mutant, is re-marked 'between' by the next line (>= low)"
    ),
    **{f"fpnlab.model.boxes.x_batched_nms__mutmut_{n}": _NMS_BRANCH for n in (18, 19, 20, 21, 22, 23)},
    **{f"fpnlab.model.boxes.x_batched_nms__mutmut_{n}": _FLOAT_MASK for n in (26, 28)},
    **{f"fpnlab.model.boxes.x_batched_nms__mutmut_{n}": _OFFSET for n in (54, 56, 63)},
    "fpnlab.model.boxes.x__nms_reference__mutmut_28": (
        "only row [0] of the IoU is read, the same row for i:i+1 and i:i+2"
    ),
    "fpnlab.model.boxes.x_check_boxes__mutmut_21": (
        "all() over everything instead of per box: the one check "
        "`(~finite | inverted).any()` and `finite.all()` give the same answers"
    ),
    **{f"fpnlab.model.roi_heads.xǁRoIHeadsǁ__init____mutmut_{n}": _GT_IN_PROPOSALS for n in (7, 10, 11)},
    "fpnlab.model.rpn.xǁRegionProposalNetworkǁforward__mutmut_14": (
        "shape[+2:] and shape[-2:] are the same (H, W) of a 4-D map"
    ),
    **{f"fpnlab.engine.checkpoint.x_load_checkpoint__mutmut_{n}": _GLOBAL for n in range(19, 29)},
    **{f"fpnlab.engine.checkpoint.x_load_checkpoint__mutmut_{n}": _MAP_LOCATION for n in (13, 16)},
    **{f"fpnlab.engine.checkpoint.x_load_checkpoint__mutmut_{n}": _WEIGHTS_ONLY for n in (14, 17)},
    **{f"fpnlab.engine.checkpoint.x_rng_state__mutmut_{n}": _SAME_VALUES for n in (13, 27, 29)},
    "fpnlab.engine.checkpoint.x_set_rng_state__mutmut_10": _SAME_VALUES,
    **{f"fpnlab.engine.checkpoint.x_export_model__mutmut_{n}": _EXPORT_MARKER for n in (17, 18, 19, 20)},
    "fpnlab.engine.checkpoint.x_save_checkpoint__mutmut_43": (
        "unlink(missing_ok=True) raises nothing, so what suppress() catches does not matter"
    ),
    **{f"fpnlab.engine.checkpoint.x_save_checkpoint__mutmut_{n}": _GONE_TMP for n in (44, 45)},
    **{f"fpnlab.engine.state.xǁTrainStateǁcreate__mutmut_{n}": _CPU_AMP for n in (22, 40)},
    **{f"fpnlab.engine.state.xǁTrainStateǁrestore__mutmut_{n}": _CPU_AMP for n in (33, 36, 37, 38)},
    "fpnlab.engine.state.xǁTrainStateǁlr__mutmut_1": (
        "both parameter groups have the same lr (they differ in weight decay only)"
    ),
    **{
        f"fpnlab.engine.runlog.xǁMetricsLogǁlog__mutmut_{n}": (
            "open(newline=None) turns '\\n' into os.linesep, which is '\\n' on POSIX, where the tests run"
        )
        for n in (5, 7)
    },
    "fpnlab.engine.stopping.xǁStopRequestsǁrequested__mutmut_2": (
        "any_process puts the flag on `device` only under DDP, "
        "and torch.tensor(device=None) is the CPU, the device "
        "of every test run"
    ),
    **{f"fpnlab.engine.loop.x_start__mutmut_{n}": "cudnn.benchmark is set only when training on CUDA" for n in (4, 5)},
    **{f"fpnlab.engine.loop.x_train_step__mutmut_{n}": _CPU_AMP for n in (4, 6, 7, 8, 9, 28)},
    **{
        f"fpnlab.engine.loop.x_train__mutmut_{n}": "flush only changes when the line appears, not what it says"
        for n in (72, 74, 75)
    },
    "fpnlab.engine.loop.x_train__mutmut_67": (
        "MetricsLog.close() closes only TensorBoard's writer, which exists only with "
        "the optional tensorboard package (test_runlog.py checks the call)"
    ),
    **{
        f"fpnlab.engine.evaluate.x_{fn}__mutmut_{n}": (
            "redirect_stdout(None) silences pycocotools' prints as well: "
            "print() writes nothing while sys.stdout is None"
        )
        for fn, n in (("coco_metrics", 61), ("cocoeval", 30))
    },
    "fpnlab.engine.evaluate.x_run_over__mutmut_1": (
        "image.to(None) leaves each image where it is: the CPU, the model's device"
    ),
    **{
        f"fpnlab.overrides.x_coerce__mutmut_{n}": (
            "`where` names the setting only in the inner call's error, which "
            "coerce catches and replaces by its own, naming `where`"
        )
        for n in (11, 28)
    },
    **{
        f"fpnlab.engine.state.x_make_optimizer__mutmut_{n}": "the no-decay group's weight decay is 0.0, SGD's default"
        for n in (16, 17)
    },
    **{
        f"fpnlab.engine.evaluate.x_cocoeval__mutmut_{n}": (
            "COCOeval reads iscrowd from the ground truth only, never from detections"
        )
        for n in (26, 27, 28)
    },
    **{
        f"fpnlab.engine.evaluate.x_cocoeval__mutmut_{n}": (
            "COCOeval finds detections through their own image and category "
            "ids; the detection set's images and categories lists are not "
            "read"
        )
        for n in (3, 4, 7, 8)
    },
    **{
        f"fpnlab.engine.evaluate.x_proposal_recall__mutmut_{n}": (
            "pycocotools fills the recall of every IoU threshold for an "
            "area that has objects, so there is no -1 to leave out"
        )
        for n in (65, 67)
    },
    "fpnlab.model.fpn.xǁFPNǁforward__mutmut_19": "F.interpolate's default mode is 'nearest'",
    "fpnlab.model.fpn.xǁFPNǁforward__mutmut_22": (
        "shape[+2:] and shape[-2:] are the same (H, W) of a 4-D (B, C, H, W) map"
    ),
}


def scratch_copy(module: str) -> Path:
    """The repository's code, tests and data in a temporary folder, with a mutmut section for `module`."""
    work = Path(tempfile.mkdtemp(prefix=f"mutate-{module.replace('/', '-')}-"))
    for name in ("fpnlab", "tests", "data", "results", "assignments", "tools", "conftest.py"):  # tests import all
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
    settings = (ROOT / "pyproject.toml").read_text()
    selection = ", ".join(f'"{t}"' for t in TESTS[module])
    settings += (
        f'\n[tool.mutmut]\nsource_paths = ["fpnlab"]\nonly_mutate = ["fpnlab/{module}.py"]\n'
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
        'also_copy = ["data", "assignments", "tools", "conftest.py"]\n'
    )
    (work / "pyproject.toml").write_text(settings)
    return work


def counts(work: Path) -> dict[str, list[str]]:
    """mutmut's verdicts: status -> mutant names."""
    output = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, capture_output=True, text=True
    ).stdout
    verdicts: dict[str, list[str]] = {}
    for name, status in re.findall(r"^\s*(\S+__mutmut_\d+): (.+)$", output, flags=re.M):
        verdicts.setdefault(status.strip(), []).append(name)
    return verdicts


def changed_lines(work: Path, mutant: str) -> tuple[str, str]:
    """The line a mutant removes and the line it adds, as `mutmut show` prints them."""
    diff = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant], cwd=work, capture_output=True, text=True
    ).stdout
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return " ".join(removed), " ".join(added)


def device_only(removed: str, added: str) -> bool:
    """True when the mutant only drops or nulls where a tensor goes: `device=x` -> `device=None` or gone,
    `.to(device)` -> `.to(None)`."""

    def strip(line: str) -> str:
        line = re.sub(r",?\s*device=[\w.\[\]]+", "", line)
        line = re.sub(r"\.to\((?:[\w.]*device|None)\)", ".to()", line)
        return re.sub(r"\s+", "", line).replace(",)", ")")

    return removed != added and strip(removed) == strip(added)


def equivalent_reason(mutant: str, removed: str, added: str) -> str | None:
    """Why a surviving mutant cannot change a result on the machines the tests run on, or None."""
    if mutant in EQUIVALENT:
        return EQUIVALENT[mutant]
    if device_only(removed, added):
        return DEVICE_ONLY
    return CUDA_ONLY if "cuda" in removed else None


def change_text(removed: str, added: str) -> str:
    return f"{removed.strip()}  ->  {added.strip()}"


def verdict_record(work: Path, module: str, seconds: float) -> dict:
    """One module's line of results/mutation.json: counts, kill rate, survivors, and the equivalent ones."""
    verdicts = counts(work)
    survived = sorted(verdicts.get("survived", []))
    changes = {m: changed_lines(work, m) for m in survived}  # (line removed, line added)
    reasons = {m: equivalent_reason(m, *changes[m]) for m in survived}
    equivalent = [m for m in survived if reasons[m]]
    total = sum(len(v) for v in verdicts.values())
    judged = total - len(equivalent)
    detected = sum(len(verdicts.get(status, [])) for status in DETECTED)
    return {
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "seconds": round(seconds),
        "tests": TESTS[module],
        "mutants": total,
        "verdicts": {k: len(v) for k, v in verdicts.items()},
        "kill_rate": round(detected / judged, 3) if judged else None,
        "not_killed": {
            status: sorted(names) for status, names in verdicts.items() if status not in ("killed", "survived")
        },  # detected otherwise, or not run
        "survivors": {m: change_text(*changes[m]) for m in survived if not reasons[m]},
        "equivalent": {m: {"change": change_text(*changes[m]), "reason": reasons[m]} for m in equivalent},
    }


def run_mutmut(module: str) -> tuple[Path, float]:
    """mutmut over `module` in a fresh scratch copy: the copy (mutmut's verdicts are stored in it) and seconds."""
    work, start = scratch_copy(module), time.perf_counter()
    # mutmut forks a worker per mutant after torch is imported; torch's OpenMP pool does not survive a
    # fork (the child hangs, and mutmut reports a timeout), so every worker computes on one thread.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", "2"], cwd=work, env=env, check=False)
    return work, time.perf_counter() - start


def main(module: str, kept: str | None = None) -> int:
    """Run `module`'s mutants, or (`kept`: a scratch copy that KEEP_SCRATCH=1 left) judge its verdicts again
    after EQUIVALENT changed, without running mutmut again."""
    if module not in TESTS:
        print(f"unknown module {module!r}; choose one of {', '.join(TESTS)}")
        return 2
    work, seconds = (Path(kept), None) if kept else run_mutmut(module)
    modules = (read_result("mutation") or {}).get("modules", {})  # read after the run: others may have written
    modules = {name: line for name, line in modules.items() if name in TESTS}  # a module moved or gone: its line goes
    line = verdict_record(work, module, seconds if seconds is not None else modules[module]["seconds"])
    write_result(
        "mutation",
        {"mutmut": version("mutmut"), "modules": dict(sorted({**modules, module: line}.items()))},
        device="cpu",
        command="make mutate MODULE=<module> (one module at a time)",
    )
    print(
        f"{module}: {line['mutants']} mutants, kill rate {line['kill_rate']}, {len(line['survivors'])} "
        f"surviving; details in results/mutation.json"
    )
    if os.environ.get("KEEP_SCRATCH") or kept:
        print(f"scratch copy kept in {work} (mutmut show NAME there)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]) if len(sys.argv) > 1 else main(""))
