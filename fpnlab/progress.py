"""Progress of long work: a progress bar, or one line when a phase starts and one when it ends.

    with phase("train", total=1200, unit="it", progress=True, initial=start) as bar:
        ...
        bar.update()

Every floor of the lab reports through this one function (making data, training, evaluating), so
`--no-progress` means the same everywhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from tqdm.auto import tqdm


@contextlib.contextmanager
def phase(name: str, total: int, unit: str, progress: bool | None, initial: int = 0) -> Iterator[tqdm]:
    """Report a phase of `total` steps: a progress bar (progress=True), one line when it starts and one when
    it ends (False), or nothing (None: a quiet caller, or a DDP process other than rank 0)."""
    start = time.perf_counter()
    if progress is False:
        print(f"{name}: {total - initial} {unit} ...", flush=True)
    bar = tqdm(total=total, initial=initial, desc=name, unit=unit, disable=progress is not True)
    try:
        yield bar
    finally:
        bar.close()
    if progress is False:
        print(f"{name}: done in {time.perf_counter() - start:.1f} s", flush=True)
