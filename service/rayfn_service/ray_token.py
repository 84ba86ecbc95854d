"""Ray's auth token: with token auth ``ray start --head`` refuses to start without one,
so rayfn makes one before the first local head; whoever reads it controls the cluster, so
rayfn keeps it (and any token file of the user's that others could read) 0600."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)


def ray_token_path() -> Path:
    """Where Ray reads its auth token: ``RAY_AUTH_TOKEN_PATH``, else ~/.ray/auth_token
    (under ``HOME``)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def ensure_ray_token() -> None:
    """With token auth, make sure Ray has a token, as ``ray.init()`` does for a new local
    cluster: ``ray start --head`` refuses to start without one (~/.ray/auth_token on a
    machine where Ray never ran).

    Ray writes its token with the process's umask (0644 as a rule), and whoever reads it
    controls the cluster: rayfn makes it 0600 (and ~/.ray 0700), and narrows a token
    file of the user's that others could read."""
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )
    from ray._raylet import (  # type: ignore[attr-defined]
        AuthenticationMode,
        AuthenticationTokenLoader,
        get_authentication_mode,
    )

    if get_authentication_mode() != AuthenticationMode.TOKEN:
        return
    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        # Where Ray's own ensure_token_if_auth_enabled writes it.
        path = Path.home() / ".ray" / "auth_token"
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another rayfn made it meanwhile
        else:
            with os.fdopen(fd, "w") as f:
                f.write(generate_new_authentication_token())
                f.flush()
                os.fsync(f.fileno())
            logger.info("made a Ray auth token in %s (mode 0600)", path)
        loader.reset_cache()
    for path in {ray_token_path(), Path.home() / ".ray" / "auth_token"}:
        _narrow_token_file(path)


def _narrow_token_file(path: Path) -> None:
    try:
        info = path.stat()
    except OSError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077 and info.st_uid == os.geteuid():
        os.chmod(path, 0o600)
        logger.warning("%s was readable by other users (mode %o); it is 0600 now",
                       path, stat.S_IMODE(info.st_mode))
