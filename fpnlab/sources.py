"""Files the lab reads: regular files only, checked before they are opened, problems said in one line.

    check_regular_file(Path("photo.jpg"), "image file")    # FpnlabError/DataError naming the file, or nothing
    data = read_bytes(Path("val.json"), "annotation file")

A named pipe, a socket or a device (/dev/zero, /dev/stdin) given where a file belongs would make a read
wait forever or never end; `os.stat` tells them apart without opening them, so they are refused at
once. Links are followed (reading through a link changes nothing); a dangling link "does not exist".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fpnlab.errors import DataError, FpnlabError
from fpnlab.outputs import write_failure


def check_regular_file(path: Path, what: str, error: type[FpnlabError] = DataError, where: str = "") -> os.stat_result:
    """The stat of `path` when it is an existing regular file (through links); `error` naming it otherwise
    (`where`, e.g. " (listed in val.json)", follows the name)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path}{where} does not exist.") from None
    except (OSError, ValueError) as err:  # a name too long, a part of it a file, a NUL byte, a loop of links
        reason = write_failure(err).replace("write", "read") if isinstance(err, OSError) else str(err)
        raise error(f"{what} {path}{where} cannot be read: {reason}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {path}{where} is a folder, not a file.")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path}{where} is not a regular file (a pipe, socket or device), so it was not read.")
    return info


def read_bytes(path: Path, what: str, error: type[FpnlabError] = DataError) -> bytes:
    """The bytes of a regular file; `error` naming the file for anything else."""
    check_regular_file(path, what, error)
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise error(f"{what} {path} cannot be read: {err.strerror or err}.") from None
