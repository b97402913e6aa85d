"""Mutation testing, one module against its own tests: `make mutate MODULE=levels` (python tools/mutate.py levels).

mutmut (3.x) changes the module in small ways (a `<` becomes `<=`, a constant changes, a line goes)
and runs the module's own test files against each change; a change no test notices is a *surviving*
mutant: a hole in the tests, or a change that cannot alter behaviour (equivalent). The run happens in a
scratch copy of the repository, so the checkout is never touched, and the counts are written to
results/mutation.json (merged with the other modules' counts), with the surviving mutants' names.

A module's run takes minutes (stage modules) to about half an hour (train) on 2 cores. Judged-equivalent
survivors are listed, with the reason, in EQUIVALENT below; the kill rate excludes them.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# module (under fpnlab/) -> the test files that are its own tests
TESTS = {
    "levels": ["tests/test_levels.py"], "anchors": ["tests/test_anchors.py"], "matching": ["tests/test_matching.py"],
    "fpn": ["tests/test_fpn.py"], "boxes": ["tests/test_boxes.py"], "poolers": ["tests/test_poolers.py"],
    "rpn": ["tests/test_rpn.py"], "roi_heads": ["tests/test_roi_heads.py"], "overrides": ["tests/test_config.py"],
    "config": ["tests/test_config.py"], "model_config": ["tests/test_config.py", "tests/test_detector.py"],
    "checkpoint": ["tests/test_checkpoint.py"], "state": ["tests/test_train.py"], "train": ["tests/test_train.py"],
    "runlog": ["tests/test_train.py"], "stopping": ["tests/test_train.py"], "evaluate": ["tests/test_evaluate.py"],
    "ablation": ["tests/test_ablation.py"], "ablation_report": ["tests/test_ablation.py"],
}
# "module.function__mutmut_N": why that change cannot alter what the module computes
EQUIVALENT: dict[str, str] = {}
RESULT = ROOT / "results" / "mutation.json"


def scratch_copy(module: str) -> Path:
    """The repository's code, tests and data in a temporary folder, with a mutmut section for `module`."""
    work = Path(tempfile.mkdtemp(prefix=f"mutate-{module}-"))
    for name in ("fpnlab", "tests", "data", "results", "conftest.py"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
    settings = (ROOT / "pyproject.toml").read_text()
    selection = ", ".join(f'"{t}"' for t in TESTS[module])
    settings += (f'\n[tool.mutmut]\nsource_paths = ["fpnlab"]\nonly_mutate = ["fpnlab/{module}.py"]\n'
                 f'pytest_add_cli_args_test_selection = [{selection}]\n'
                 'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\nalso_copy = ["data", "conftest.py"]\n')
    (work / "pyproject.toml").write_text(settings)
    return work


def counts(work: Path) -> dict[str, list[str]]:
    """mutmut's verdicts: status -> mutant names."""
    output = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                            capture_output=True, text=True).stdout
    verdicts: dict[str, list[str]] = {}
    for name, status in re.findall(r"^\s*(\S+__mutmut_\d+): (.+)$", output, flags=re.M):
        verdicts.setdefault(status.strip(), []).append(name)
    return verdicts


def main(module: str) -> int:
    if module not in TESTS:
        print(f"unknown module {module!r}; choose one of {', '.join(TESTS)}")
        return 2
    work = scratch_copy(module)
    subprocess.run([sys.executable, "-m", "mutmut", "run"], cwd=work, check=False)
    verdicts = counts(work)
    survived = sorted(verdicts.get("survived", []))
    equivalent = [m for m in survived if m in EQUIVALENT]
    total = sum(len(v) for v in verdicts.values())
    judged = total - len(equivalent)
    killed = judged - (len(survived) - len(equivalent)) - len(verdicts.get("no tests", []))
    record = json.loads(RESULT.read_text()) if RESULT.is_file() else {"command": "make mutate MODULE=...", "modules": {}}
    record["modules"][module] = {
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(), "tests": TESTS[module],
        "mutants": total, "verdicts": {k: len(v) for k, v in verdicts.items()},
        "kill_rate": round(killed / judged, 3) if judged else None,
        "survivors": [m for m in survived if m not in EQUIVALENT],
        "equivalent": {m: EQUIVALENT[m] for m in equivalent},
    }
    RESULT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{module}: {total} mutants, kill rate {record['modules'][module]['kill_rate']}, "
          f"{len(survived) - len(equivalent)} surviving; details in {RESULT}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
