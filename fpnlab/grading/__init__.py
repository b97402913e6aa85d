"""The graded assignment's machinery: which functions students write, and how their code is checked.

    registry      UNITS: each unit's stage module, function and notebook section; DEVICE
    markers       the code between '# BEGIN UNIT' and '# END UNIT', and what it may not use
    fallbacks     torchvision's equivalent of each unit
    runtime       the switch stubs and test cases turn: the student's code, a fallback or a stand-in
    remote        `run("iou", boxes._iou, a, b)`: a unit called in a fresh process of its own, plain results back
    process       that process: started, asked with a time limit, ended
    worker        inside that process: rebuild the objects, call the student's code, answer
    frames        the plain data that passes between the two (torch.load(weights_only=True))
    check         `check("iou")`: a unit's visible cases, failures in words
    expect        the comparisons the test cases make
    case_inputs   reproducible random inputs for the cases

The student release's stubs and test files use it as `from fpnlab import grading as units`.
"""

from fpnlab.grading.check import check, explain, load_cases, test_file
from fpnlab.grading.expect import expect_close, expect_equal, expect_tensor, shown
from fpnlab.grading.fallbacks import FALLBACKS
from fpnlab.grading.markers import refusal, regions, unit_code
from fpnlab.grading.registry import DEVICE, UNITS, Unit, build_it_yourself, where
from fpnlab.grading.remote import Built, build, run, run_job
from fpnlab.grading.runtime import checking, fallback, fallback_enabled, stand_in, strict, todo

__all__ = [
    "Built",
    "DEVICE",
    "FALLBACKS",
    "UNITS",
    "Unit",
    "build",
    "build_it_yourself",
    "check",
    "checking",
    "expect_close",
    "expect_equal",
    "expect_tensor",
    "explain",
    "fallback",
    "fallback_enabled",
    "load_cases",
    "refusal",
    "regions",
    "run",
    "run_job",
    "shown",
    "stand_in",
    "strict",
    "test_file",
    "todo",
    "unit_code",
    "where",
]
