"""Files only the user who runs rayfn can read: directories made 0700 and files written
0600 (replaced atomically, created only if absent, or appended to as logs),
``secure_state_dir``, which narrows what an earlier rayfn or a wider umask left readable
in the state directory, and ``PRIVATE_UMASK`` for the processes rayfn starts."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from rayfn.settings import Settings

# Files rayfn and its head create are private to the user who runs them.
PRIVATE_UMASK = 0o077


def owned_by_me(path: Path) -> bool:
    try:
        return path.lstat().st_uid == os.geteuid()
    except OSError:
        return False


def make_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, or narrow it to 0700 if it exists (and is ours)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if owned_by_me(path) and path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, atomically, as a file of mode 0600."""
    make_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def open_private_log(path: Path) -> int:
    """A file descriptor appending to the log ``path`` (mode 0600, even if it existed)."""
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return fd


# What rayfn keeps in a state directory (the store's files are made by the registry).
STATE_FILES = ("rayfn.sqlite3", "rayfn.sqlite3-wal", "rayfn.sqlite3-shm",
               "rayfn.sqlite3-journal", "head.json", "ray_address", "token", "server.key",
               "server.pid", "registry-host.json", "host.log", "server.log")


def secure_state_dir(settings: Settings) -> None:
    """Make the state directory 0700 and rayfn's files in it 0600 (an earlier rayfn, or
    a process with a wider umask, may have left them readable by others)."""
    make_private_dir(settings.state_dir)
    for name in STATE_FILES:
        entry = settings.state_dir / name
        try:
            mode = entry.lstat().st_mode
        except OSError:
            continue  # not there (or removed meanwhile: a SQLite journal)
        if stat.S_ISREG(mode) and mode & 0o077 and owned_by_me(entry):
            with contextlib.suppress(OSError):
                os.chmod(entry, 0o600)


def create_secret_file(path: Path, value: str) -> bool:
    """Write ``value`` to a new file of mode 0600; False if the file exists already."""
    make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return True
