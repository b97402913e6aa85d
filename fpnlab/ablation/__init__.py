"""The paper's ablations (Tables 1-3): its numbers, the variants as typed changes, the runner and the report."""

from fpnlab.ablation.runner import run_ablation

__all__ = ["run_ablation"]
