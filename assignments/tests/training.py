"""Capstone, part 2: your units train the detector as the lab's do.

A short fixed-seed training run of the "test" preset's small detector on a few shapes-mini images, made of
your units only (no fallback), in a process of its own (fpnlab.teaching.capstone.training_probe): every
unit takes part, the losses through matcher, sampler, encode, rpn_loss and roi_loss, the gradients back
through pooler, roi_align, fpn and backbone. Expected values: the same run of the lab's own units
(results/assignment_training.json, `python -m assignments.reference`). The balanced sampler draws at random,
so a correct implementation may sample other anchors: the tolerances below allow for that, not for more.
"""

import math
import statistics

from otter.test_files import test_case

from fpnlab import grading as units
from fpnlab.grading import remote

OK_FORMAT = False
name = "training"
points = 5
ITERATIONS = 40
IMAGES = 8
REFERENCE_LOSSES = [2.82, 1.68]  # set by the build: the reference's first loss, mean of its last 10
REFERENCE_GRADIENTS = {"backbone": 1.97, "neck": 1.38, "rpn": 0.43, "roi_heads": 7.82}  # set by the build
TIME_LIMIT_S = 300
FIRST_LOSS_RTOL = 0.10  # the first loss: same weights, same images, perhaps other samples
GRADIENT_RATIO = 1.5  # each part's first gradient norm within this factor of the reference's
END_RATIO = 1.15  # the mean of the last 10 losses at most this times the reference's...
DECREASE = 0.85  # ...and at most this times the mean of your first 10


def probe():
    return units.run_job(
        "training", "fpnlab.teaching.capstone:training_probe", ITERATIONS, IMAGES, time_limit_s=TIME_LIMIT_S
    )


@test_case(name="a short training run of your units: finite gradients through every part, the loss falls as the lab's")
def trains_like_the_reference():
    refused = remote.refused_units()
    assert not refused, f"units {', '.join(refused)} are refused or not graded, so the detector is not your own."
    found = probe()
    losses, gradients = found["losses"], found["gradients"]
    assert len(losses) == ITERATIONS and all(math.isfinite(x) for x in losses), "the losses are not all finite numbers."
    for part, expected in REFERENCE_GRADIENTS.items():
        got = gradients.get(part, math.nan)
        assert math.isfinite(got) and got > 0, f"no finite gradient reaches the {part}'s weights (got {got:g})."
        assert expected / GRADIENT_RATIO <= got <= expected * GRADIENT_RATIO, (
            f"the {part}'s first gradient norm is {got:.3g}, the lab's {expected:.3g}: "
            f"more than {GRADIENT_RATIO}x apart."
        )
    first, end = losses[0], statistics.mean(losses[-10:])
    assert abs(first - REFERENCE_LOSSES[0]) <= FIRST_LOSS_RTOL * REFERENCE_LOSSES[0], (
        f"the first loss is {first:.4g}, the lab's {REFERENCE_LOSSES[0]:.4g} (same weights, same images)."
    )
    assert end <= END_RATIO * REFERENCE_LOSSES[1] and end <= DECREASE * statistics.mean(losses[:10]), (
        f"the loss does not fall as the lab's: the mean of the last 10 iterations is {end:.4g}, the lab's "
        f"{REFERENCE_LOSSES[1]:.4g}, and {statistics.mean(losses[:10]):.4g} over your first 10."
    )
