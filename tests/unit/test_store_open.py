"""open_store and open_reader: which backend a location names."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rayfn.exception import InvalidError
from rayfn_service.store import open_reader, open_store
from rayfn_service.store.reader import StoreReader
from rayfn_service.store.sqlite import SqliteStore


@pytest.mark.parametrize("as_text", [False, True])
def test_a_path_opens_a_sqlite_store(tmp_path: Path, as_text: bool) -> None:
    path = tmp_path / "state" / "rayfn.db"
    store = open_store(str(path) if as_text else path)
    try:
        assert isinstance(store, SqliteStore)
        with store.transaction():
            assert store.deploy("app", [], ephemeral=False, now=0.0) == 1
    finally:
        store.close()
    reader = open_reader(str(path) if as_text else path)
    try:
        assert isinstance(reader, StoreReader)
        assert reader.finished_call("nope") is None
    finally:
        reader.close()


def test_a_relative_path_is_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    open_store("rayfn.db").close()
    assert os.path.exists(tmp_path / "rayfn.db")


@pytest.mark.parametrize("opener", [open_store, open_reader])
def test_an_unknown_scheme_is_invalid_and_named_without_the_rest(
    opener: Callable[[str], object],
) -> None:
    with pytest.raises(InvalidError, match="'mysql'") as caught:
        opener("mysql://someone:s3cret@db.example/rayfn")
    assert "s3cret" not in str(caught.value)  # a URL may carry a password
