"""Files the lab writes: checked before any work starts, written atomically, failures said in words.

    check_output_file(Path("boxes.png"), "--out", inputs=(image_path,))   # before a long job, not after it
    check_writable_folder(Path("runs/cpu"), "run folder")                 # checks only: creates nothing
    write_text_atomic(path, text)          # a reader never sees half a file; a crash leaves the old one

Nothing here deletes or overwrites a file the user gave as an input.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from fpnlab.errors import FpnlabError


def write_failure(err: BaseException) -> str:
    """What went wrong when writing a file, in words."""
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (free some space, or write to another disk)"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "no permission to write there (a read-only folder or file system)"
    return f"{type(err).__name__}: {str(err).strip()[:120]}"


def check_writable_folder(path: Path, what: str) -> None:
    """FpnlabError naming `what` unless files can be written in folder `path` (or made there, if it is new).

    Nothing is created: the check writes and removes a probe file in the nearest folder that exists.
    """
    if path.exists() and not path.is_dir():
        raise FpnlabError(f"{what} {path} is a file, not a folder; pick a folder.")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise FpnlabError(f"{what} {path} cannot be made: {existing} is a file.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise FpnlabError(f"cannot write in {what} {path}: {write_failure(err)}.") from None


def check_output_file(path: Path, option: str, inputs: tuple[Path, ...] = ()) -> None:
    """A file about to be written: not a folder, not one of the `inputs`, in a folder files can be written in."""
    if path.is_dir():
        raise FpnlabError(f"{option} {path} is a folder; give a file name.")
    for source in inputs:
        if path.resolve() == Path(source).resolve():
            raise FpnlabError(
                f"{option} {path} is the input file itself; pick another name, so that the input is not overwritten."
            )
    check_writable_folder(path.resolve().parent, f"the folder of {option}")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to a temporary file next to `path`, then rename it over `path`; FpnlabError on failure."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        raise FpnlabError(f"could not write {path}: {write_failure(err)}.") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def unused_name(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`, ...: the first name not taken, so that nothing is overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate
