"""Files and directories readable by their owner only: the audit database, its WAL and SHM files, the
backtests' database, log files and lock files hold decisions, prompts, positions and account ids.

A file is created with mode 0600 and a directory with 0700 whatever the umask (a umask can only take
permissions away). An existing file of ours that is readable by others (written by an older version, or
under a loose umask) is narrowed to 0600 when it is opened again; an existing directory is left as it is,
since it may be the user's own (the working directory, /tmp).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each new one with mode 0700; existing ones stay as they are."""
    missing: list[Path] = []
    for d in (directory, *directory.parents):
        if d.is_dir():
            break
        missing.append(d)
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue  # made meanwhile by another process: not ours to change


def narrow_fd(fd: int) -> None:
    """Narrow the open file ``fd`` to mode 0600 when it is a regular file of ours that others can read or write."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & FILE_MODE)


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open`: the file is created with mode 0600, or narrowed to it when it exists."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        narrow_fd(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists; an existing one is narrowed to 0600 (see module)."""
    os.close(private_opener(str(path), os.O_RDONLY | os.O_CREAT))


def narrow_if_present(path: Path) -> None:
    """Narrow ``path`` to mode 0600 when it exists (a WAL or SHM file beside a database): never creates it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # absent, or a symbolic link (not ours to follow)
        return
    try:
        narrow_fd(fd)
    finally:
        os.close(fd)
