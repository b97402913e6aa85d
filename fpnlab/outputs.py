"""Every file the lab writes goes through here: checked before any work, written atomically, never through a link.

    check_output_file(Path("boxes.png"), "--out", inputs=(image,))   # before a long job, not after it
    write_atomic(path, data, "checkpoint", may_replace=is_checkpoint)   # a reader never sees half a file
    write_new(folder / "000001.jpg", data, "image")                  # a file that must not exist yet
    with open_lock(folder / ".lock", "run folder lock") as handle: ...
    make_subfolder(out / "train", "dataset folder")                  # a folder the lab makes: never a link

The rules, for every write (tests/test_outputs.py scans the package for any write made elsewhere):

* A temporary file is created exclusively (O_CREAT | O_EXCL, which never follows a link) under a unique
  name in the target's own folder, `.NAME.<random>.fpnlab-tmp`, so no fixed name can be taken over.
* The final rename replaces only a path that does not exist, or a regular file the lab made: the caller
  says which with `may_replace` (a lab-stamped record, a checkpoint, a file of a folder marked as the
  lab's). A symbolic link, a folder, a pipe, a socket or a device there is refused, and so is any
  other existing file: nothing the user made is overwritten.
* No write opens a path that is a symbolic link (O_NOFOLLOW), and a folder the lab makes inside a
  user's folder (train/, tensorboard/) must be a real folder, not a link to somewhere else.
* Every OSError becomes one FpnlabError naming the file and the cause (a full disk, no permission).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from fpnlab.errors import FpnlabError

TEMP_SUFFIX = ".fpnlab-tmp"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; Windows has no symbolic links to follow by accident here
NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a named pipe must not wait for a writer
Replaceable = Callable[[Path], bool]


def write_failure(err: BaseException) -> str:
    """What went wrong when writing a file, in words."""
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (free some space, or write to another disk)"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "no permission to write there (a read-only folder or file system)"
    if code == errno.ENAMETOOLONG:
        return "the name is too long for the file system"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if code == errno.ELOOP:
        return "it is a symbolic link, and fpnlab writes through no link"
    return f"{type(err).__name__}: {(err.strerror or str(err)).strip()[:120]}" if isinstance(err, OSError) else str(err)


def always(path: Path) -> bool:
    """`may_replace` for the lab's own names in a folder marked as the lab's."""
    return True


# --- checks before any work -------------------------------------------------------------------------


def check_replaceable(path: Path, what: str, may_replace: Replaceable | None = None) -> None:
    """FpnlabError unless `path` is missing, or a regular file (not a link) that `may_replace` accepts."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise FpnlabError(f"cannot write {what} {path}: {write_failure(err)}.") from None
    if stat.S_ISLNK(info.st_mode):
        raise FpnlabError(
            f"{what} {path} is a symbolic link; fpnlab writes through no link (it would replace the file "
            "it points to), so give another name."
        )
    if stat.S_ISDIR(info.st_mode):
        raise FpnlabError(f"{what} {path} is a folder; give a file name.")
    if not stat.S_ISREG(info.st_mode):
        raise FpnlabError(f"{what} {path} is not a regular file (a pipe, socket or device); give another name.")
    if may_replace is None or not may_replace(path):
        raise FpnlabError(
            f"{what} {path} already exists and was not written by fpnlab; pick another name or move it "
            "away (it was left unchanged)."
        )


def check_writable_folder(path: Path, what: str) -> None:
    """FpnlabError naming `what` unless files can be written in folder `path` (or made there, if it is new).

    Nothing is created: the check writes and removes a probe file in the nearest folder that exists.
    """
    try:
        if path.exists() and not path.is_dir():
            raise FpnlabError(f"{what} {path} is a file, not a folder; pick a folder.")
        existing = path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise FpnlabError(f"{what} {path} cannot be made: {existing} is a file.")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise FpnlabError(f"cannot write in {what} {path}: {write_failure(err)}.") from None


def check_output_file(
    path: Path, option: str, inputs: tuple[Path, ...] = (), may_replace: Replaceable | None = None
) -> None:
    """A file about to be written: not a link, folder or existing user file, not one of the `inputs`
    through any link (same device and inode), in a folder files can be written in."""
    path = Path(path)
    for source in inputs:
        if same_file(path, Path(source)):
            raise FpnlabError(
                f"{option} {path} is the input file itself ({source}, by name or through a link); pick another "
                "name, so that the input is not overwritten."
            )
    check_replaceable(path, option, may_replace)
    check_writable_folder(path.parent, f"the folder of {option}")


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same name, or the same device and inode (any link)."""
    try:
        if os.path.abspath(a) == os.path.abspath(b):
            return True
        first, second = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


# --- folders ------------------------------------------------------------------------------------------


def make_folder(path: Path, what: str) -> Path:
    """Make folder `path` and its parents (the user's path: it may pass through links the user made)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise FpnlabError(f"cannot make {what} {path}: {write_failure(err)}.") from None
    return path


def make_subfolder(path: Path, what: str) -> Path:
    """Make a folder the lab owns inside a folder it checked: it must be a real folder, never a link."""
    make_folder(path.parent, what)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError as err:
        raise FpnlabError(f"cannot make {what} {path}: {write_failure(err)}.") from None
    if os.path.islink(path) or not os.path.isdir(path):
        raise FpnlabError(f"{what} {path} is a link or a file, not a folder; fpnlab writes only into real folders.")
    return path


def folder_entries(root: Path) -> list[Path]:
    """Everything under `root` that is not a real folder (files, links, pipes...), never following a link."""
    found = []
    for folder, names, files in os.walk(root, followlinks=False):
        found += [Path(folder, name) for name in files]
        found += [Path(folder, name) for name in names if os.path.islink(Path(folder, name))]
    return sorted(found)


def is_regular(path: Path) -> bool:
    """A regular file itself, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def listing(paths: list[Path], root: Path, limit: int = 5) -> str:
    """'a.txt, b/c.png and 3 more': what a refused folder holds."""
    names = [str(p.relative_to(root)) for p in paths]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@contextlib.contextmanager
def temporary_folder(prefix: str) -> Iterator[Path]:
    """A new private folder under the system's temporary folder, removed with everything in it afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


# --- writing ------------------------------------------------------------------------------------------


def _create(path: Path, what: str) -> int:
    """A new file at `path`, opened for writing: O_EXCL, so never an existing file and never through a link."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_BINARY", 0), 0o666)
    except FileExistsError:
        raise FpnlabError(f"{what} {path} already exists; fpnlab does not overwrite it.") from None
    except OSError as err:
        raise FpnlabError(f"could not write {what} {path}: {write_failure(err)}.") from None


def _write_all(fd: int, data: bytes, sync: bool) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def write_new(path: Path, data: bytes | str, what: str) -> Path:
    """Write a file that must not exist yet (a dataset image, a kept copy); FpnlabError on any failure."""
    data = data.encode() if isinstance(data, str) else data
    fd = _create(path, what)
    try:
        _write_all(fd, data, sync=False)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(path)  # the half-written file this call created
        raise FpnlabError(f"could not write {what} {path}: {write_failure(err)}.") from None
    return path


def temporary_name(path: Path) -> Path:
    """A fresh name beside `path` for its temporary file (the name is cut so that it fits any file system)."""
    return path.with_name(f".{path.name[:80]}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def _create_temporary(path: Path, what: str) -> tuple[Path, int]:
    """A new temporary file beside `path`: a name already taken (by chance or on purpose) is skipped, never opened."""
    while True:
        tmp = temporary_name(path)
        try:
            return tmp, _create(tmp, what)
        except FpnlabError:
            if not os.path.lexists(tmp):
                raise


def write_atomic(path: Path, data: bytes | str, what: str, may_replace: Replaceable | None = None) -> Path:
    """Write `data` to a new temporary file beside `path`, then rename it over `path`; FpnlabError on failure.

    `path` must be missing or a regular file `may_replace` accepts (see the module's rules); a failure
    leaves what was at `path` as it was, and removes the temporary file.
    """
    path, data = Path(path), data.encode() if isinstance(data, str) else data
    check_replaceable(path, what, may_replace)
    tmp, fd = _create_temporary(path, what)
    try:
        _write_all(fd, data, sync=True)
        check_replaceable(path, what, may_replace)  # again just before the rename: nothing swapped in since
        os.replace(tmp, path)
    except OSError as err:
        kept = f"the {what} already there is unchanged" if is_regular(path) else "nothing was written"
        raise FpnlabError(f"could not write {what} {path}: {write_failure(err)}; {kept}.") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # still there only when writing failed
    return path


def move_into_place(source: Path, path: Path, what: str, may_replace: Replaceable | None = None) -> Path:
    """Rename the lab's finished file `source` (a completed download) to `path`, by the same rules."""
    check_replaceable(path, what, may_replace)
    if not is_regular(source):
        raise FpnlabError(f"{what} {source} is not a regular file; nothing was moved.")
    try:
        os.replace(source, path)
    except OSError as err:
        raise FpnlabError(f"could not move {source} to {path}: {write_failure(err)}.") from None
    return path


def remove_lab_file(path: Path, what: str) -> None:
    """Delete a regular file the lab made (never a link, a folder or what a link points to)."""
    if not is_regular(path):
        raise FpnlabError(f"{what} {path} is not a regular file fpnlab made; it was left as it is.")
    try:
        os.unlink(path)
    except OSError as err:
        raise FpnlabError(f"could not delete {what} {path}: {write_failure(err)}.") from None


def rename_folder(source: Path, target: Path, what: str) -> Path:
    """Rename the lab's finished folder `source` to the new name `target` (which must not exist)."""
    if os.path.lexists(target):
        raise FpnlabError(f"{what} {target} already exists; fpnlab does not replace it.")
    try:
        os.rename(source, target)
    except OSError as err:
        raise FpnlabError(f"could not rename {source} to {target}: {write_failure(err)}.") from None
    return target


def _open_regular(path: Path, what: str, flags: int, mode: str) -> IO[Any]:
    """Open (creating) `path` with `flags`, never through a link, and only if it is a regular file."""
    with contextlib.suppress(OSError):
        if not stat.S_ISREG(os.lstat(path).st_mode) and not os.path.islink(path):
            raise FpnlabError(f"{what} {path} is not a regular file (a pipe, socket or device); it was left as it is.")
    try:
        fd = os.open(path, flags | os.O_CREAT | NOFOLLOW | NONBLOCK, 0o666)
    except OSError as err:
        raise FpnlabError(f"could not open {what} {path}: {write_failure(err)}.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FpnlabError(f"{what} {path} is not a regular file (a pipe, socket or device); it was left as it is.")
    return os.fdopen(fd, mode) if "b" in mode else os.fdopen(fd, mode, newline="")


def open_append(path: Path, what: str, binary: bool = False, truncate: bool = False) -> IO[Any]:
    """`path` opened to add to its end (metrics.csv, a download's .part), created if missing, emptied first
    with `truncate`; never through a link."""
    flags = os.O_WRONLY | os.O_APPEND | (os.O_TRUNC if truncate else 0) | getattr(os, "O_BINARY", 0)
    return _open_regular(path, what, flags, "ab" if binary else "a")


def open_lock(path: Path, what: str) -> IO[str]:
    """A lock file opened for reading and writing, created if missing; never through a link, never a pipe."""
    return _open_regular(path, what, os.O_RDWR, "r+")


def event_writer(folder: Path, purge_step: int) -> Any:
    """TensorBoard's SummaryWriter into the lab's own `folder` (a real folder), or None without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional: only when tensorboard is installed
    except ImportError:
        return None
    make_subfolder(folder, "TensorBoard folder")
    return SummaryWriter(str(folder), purge_step=purge_step)


def unused_name(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`, ...: the first name not taken, so that nothing is overwritten."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate
