"""Unit 'sampler': a random mini-batch of positives and negatives, fpnlab/matching.py
`BalancedPositiveNegativeSampler.__call__`.

Expected values: counts and sets worked out by hand (the sample is random, so its indices are checked by
what they must satisfy: how many, from which labels, no repeats, every candidate equally likely).
"""

import torch
from otter.test_files import test_case

from fpnlab import grading as units
from fpnlab.model import matching

OK_FORMAT = False
name = "sampler"
points = 2
SEED = 0  # the hidden cases' random draws: set by the build from the instructor's secret


def labels_of(counts, seed):
    """Shuffled labels: counts = {label: how many}."""
    labels = torch.cat([torch.full((n,), label, dtype=torch.int64) for label, n in counts.items()])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))].to(units.DEVICE)


def sample(labels, batch, fraction):
    return units.run("sampler", units.build(matching.BalancedPositiveNegativeSampler, batch, fraction), labels)


def expect_sample(got, labels, n_pos, n_neg, what):
    """The sample holds n_pos positives (labels >= 1) and n_neg negatives (label 0), each at most once."""
    if not isinstance(got, tuple) or len(got) != 2:
        raise AssertionError(f"{what}: expected a tuple (positives, negatives), got {type(got).__name__}.")
    for part, n, kind, wanted in ((got[0], n_pos, "positive", labels >= 1), (got[1], n_neg, "negative", labels == 0)):
        if not isinstance(part, torch.Tensor) or part.dtype != torch.int64 or part.dim() != 1:
            raise AssertionError(f"{what}: the {kind} indices must be a 1-d int64 tensor, got {part!r}.")
        if len(part) != n:
            raise AssertionError(f"{what}: {len(part)} {kind} indices, expected {n}.")
        if len(torch.unique(part)) != len(part):
            raise AssertionError(f"{what}: some {kind} indices are sampled twice.")
        if len(part) and not bool(wanted[part].all()):
            raise AssertionError(f"{what}: some {kind} indices point at candidates that are not {kind}.")


@test_case(name="by hand: 10 positives, 100 negatives, 20 ignored; batch 32, a quarter positive: 8 + 24")
def counts_by_hand():
    labels = labels_of({1: 10, 0: 100, -1: 20}, seed=0)
    expect_sample(sample(labels, 32, 0.25), labels, 8, 24, "batch 32 of 130 candidates")


@test_case(name="by hand: too few positives (3): the batch of 32 is filled with 29 negatives")
def few_positives_by_hand():
    labels = labels_of({1: 3, 0: 100}, seed=1)
    expect_sample(sample(labels, 32, 0.5), labels, 3, 29, "batch 32 with 3 positives")


@test_case(name="by hand: too few of both, class labels 1..5 count as positive, ignored never sampled", hidden=True)
def few_of_both_classes():
    labels = labels_of({1: 1, 3: 1, 5: 2, 0: 5, -1: 40}, seed=SEED + 2)
    expect_sample(sample(labels, 256, 0.25), labels, 4, 5, "batch 256 of 9 usable candidates")


@test_case(name="every positive equally likely: 600 draws of 1 among 4 each land 100-200 times", hidden=True)
def uniform():
    labels = labels_of({1: 4, 0: 50}, seed=SEED + 3)
    torch.manual_seed(0)
    picked = torch.cat([sample(labels, 2, 0.5)[0] for _ in range(600)])
    counts = torch.bincount(picked.cpu(), minlength=len(labels))[(labels >= 1).cpu()]
    if len(picked) != 600 or not bool(((counts >= 100) & (counts <= 200)).all()):
        raise AssertionError(
            f"positives drawn {counts.tolist()} times in 600 draws (expected about 150 each): "
            "the sample is not uniform."
        )


@test_case(name="no candidates: two empty int64 tensors", hidden=True)
def empty():
    labels = torch.zeros(0, dtype=torch.int64, device=units.DEVICE)
    expect_sample(sample(labels, 256, 0.5), labels, 0, 0, "no candidates")


@test_case(name="by hand: a positive share that is not whole (10 x 0.25 = 2.5) rounds down: 2 + 8", hidden=True)
def fraction_rounds_down():
    labels = labels_of({1: 6, 0: 30}, seed=SEED + 4)
    expect_sample(sample(labels, 10, 0.25), labels, 2, 8, "batch 10, a quarter positive")
