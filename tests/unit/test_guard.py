"""The REST server's token source: read once, read again after a rotation."""

from __future__ import annotations

import os
from pathlib import Path

from rayfn.settings import Settings
from rayfn_service.api.guard import TokenSource


def test_token_is_reread_only_when_the_file_changes(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, token="")
    source = TokenSource(settings)
    assert source() == ""  # no token file: nothing is accepted
    settings.token_file.write_text("first\n")
    assert source() == "first"
    os.chmod(settings.token_file, 0o600)
    assert source() == "first"
    settings.token_file.write_text("second-token\n")  # rotation
    assert source() == "second-token"


def test_token_setting_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    assert TokenSource(Settings(state_dir=tmp_path, token="from-env"))() == "from-env"
