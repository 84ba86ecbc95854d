"""A local head needs a Ray auth token; on a machine where Ray never ran there is none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_token_is_made_before_the_first_local_head(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "token"}
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    script = "from rayfn_service.ray_token import ensure_ray_token; ensure_ray_token()"
    for _ in range(2):  # the second run keeps the token the first made
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
        token = (tmp_path / ".ray" / "auth_token").read_text()
        assert len(token) >= 32
    assert (tmp_path / ".ray" / "auth_token").read_text() == token
