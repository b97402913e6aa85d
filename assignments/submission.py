"""A submission reduced to the files the assignment expects, before anything of it runs.

    found = reduce_submission(Path("upload"))    # Submitted(files={"fpnlab/model/boxes.py": b"...", ...},
                                                 #           missing=[...], extra=["cheat.ipynb", ...])

The upload is what the student sent: the zip the notebook's last cell writes (unpacked by Gradescope or not),
or the release's folder zipped whole. Only the paths of assignments.config.SUBMITTED are read, as bytes,
from regular files (a link is not followed); every other file is named in `extra` and never used. A zip
still packed is unpacked into a folder of its own, with a cap on its size.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from assignments.config import SUBMITTED

MAX_UNPACKED_BYTES = 400 * 2**20  # a submission is ~1 MB of code and a ~10 MB model; more is refused
MAX_NAMED = 20  # extra files named in the result; the rest are counted
IGNORED = ("__pycache__", ".DS_Store", ".ipynb_checkpoints", "__MACOSX")  # an editor's leftovers, not extras


@dataclass
class Submitted:
    """The expected files that were there (path -> bytes), those that were not, and everything else."""

    files: dict[str, bytes] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per problem with the files, for the result everyone sees."""
        lines = [f"missing from the submission: {name}" for name in self.missing]
        if self.extra:
            named = ", ".join(self.extra[:MAX_NAMED])
            more = f" and {len(self.extra) - MAX_NAMED} more" if len(self.extra) > MAX_NAMED else ""
            lines.append(f"not graded, not run (only the expected files are): {named}{more}")
        return lines


def reduce_submission(upload: Path) -> Submitted:
    """The expected files of the submission in `upload` (a folder), unpacking a zip in it first if needed."""
    with tempfile.TemporaryDirectory(prefix="fpnlab-upload-") as unpacked:
        root = student_root(upload, Path(unpacked))
        found = Submitted()
        for name in SUBMITTED:
            path = root / name
            if path.is_file() and not any(p.is_symlink() for p in (path, *path.parents) if root in p.parents):
                found.files[name] = path.read_bytes()
            else:
                found.missing.append(name)
        found.extra = sorted(
            path.relative_to(root).as_posix()
            for path in root.rglob("*")
            if (path.is_file() or path.is_symlink())
            and path.relative_to(root).as_posix() not in found.files
            and not any(part in IGNORED for part in path.relative_to(root).parts)
        )
        return found


def student_root(upload: Path, scratch: Path) -> Path:
    """The folder holding the student's fpnlab/: the upload, the one folder in it that holds it, or the same
    inside the one zip of the upload, unpacked into `scratch`."""
    zips = sorted(upload.glob("*.zip"))
    if not (upload / "fpnlab").is_dir() and not _inner(upload) and len(zips) == 1:
        unpack(zips[0], scratch)
        upload = scratch
    inner = _inner(upload)
    return inner if not (upload / "fpnlab").is_dir() and inner is not None else upload


def _inner(folder: Path) -> Path | None:
    """The one folder directly inside `folder` that holds an fpnlab/, if there is exactly one."""
    found = [path.parent for path in folder.glob("*/fpnlab") if path.is_dir() and not path.is_symlink()]
    return found[0] if len(found) == 1 else None


def unpack(archive: Path, into: Path) -> None:
    """Unpack a zip (zipfile keeps every path inside `into`), refusing one that unpacks too large."""
    try:
        with zipfile.ZipFile(archive) as packed:
            if sum(info.file_size for info in packed.infolist()) > MAX_UNPACKED_BYTES:
                return  # nothing unpacked: every expected file is then missing, and the result says so
            packed.extractall(into)
    except (zipfile.BadZipFile, OSError):
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(exist_ok=True)
