"""The capstone's training reference: the lab's own units in the short training run the grader repeats.

    python -m assignments.reference      # writes results/assignment_training.json (~20 s on one core)

The build reads it (assignments/points.toml's [training] must name the same iterations and images) and
fills the reference's first loss, the mean of its last 10 and its first gradient norms into the
autograder's tests/training.py. Rerun it after changing the probe (fpnlab/teaching/capstone.py), the
"test" preset or a unit's reference code.
"""

from __future__ import annotations

import statistics
import sys

from assignments.config import read_points
from fpnlab.results import write_result
from fpnlab.teaching.capstone import training_probe

RESULT = "assignment_training"


def main() -> int:
    training = read_points().training
    probe = training_probe(training.iterations, training.images)
    losses = probe["losses"]
    path = write_result(
        RESULT,
        {
            "iterations": training.iterations,
            "images": training.images,
            "first_loss": losses[0],
            "end_loss": statistics.mean(losses[-10:]),
            "gradients": probe["gradients"],
            "losses": losses,
        },
        device="cpu",
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
