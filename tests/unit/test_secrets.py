"""Secrets: the checks both sides make, names of inline secrets, repr, .env files, and
the store's secrets table on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

import rayfn
from rayfn.exception import InvalidError, NotFoundError
from rayfn.protocol.secrets import (
    MAX_SECRET_BYTES,
    MAX_SECRET_KEYS,
    inline_secret_name,
    validate_secret_values,
)
from rayfn_service.store.sqlite import SqliteStore


def test_valid_values_pass_and_a_copy_comes_back() -> None:
    given = {"API_KEY": "s3cr3t", "_X1": ""}
    checked = validate_secret_values(given)
    assert checked == given and checked is not given


@pytest.mark.parametrize("values, match", [
    ({}, "at least one key"),
    ({"1BAD": "v"}, "not an environment variable name"),
    ({"A-B": "v"}, "not an environment variable name"),
    ({"": "v"}, "not an environment variable name"),
    ({"K": 1}, "must be a str"),
    ({"K": "a\0b"}, "NUL"),
    ({"K": "x" * MAX_SECRET_BYTES}, "limit is"),
    ({f"K{i}": "" for i in range(MAX_SECRET_KEYS + 1)}, "limit is"),
    (["K"], "dict of str"),
])
def test_invalid_values_are_refused_without_showing_a_value(values: object, match: str
                                                           ) -> None:
    with pytest.raises(InvalidError, match=match) as caught:
        validate_secret_values(values)
    assert "a\0b" not in str(caught.value) and "xxxx" not in str(caught.value)


def test_inline_names_are_a_hash_of_the_content() -> None:
    name = inline_secret_name({"A": "1", "B": "2"})
    assert name.startswith("inline-") and len(name) == len("inline-") + 20
    assert name == inline_secret_name({"B": "2", "A": "1"})  # order does not matter
    assert name != inline_secret_name({"A": "1", "B": "3"})
    rayfn.Secret.from_name(name)  # a valid secret name


def test_repr_never_shows_values() -> None:
    inline = rayfn.Secret.from_dict({"TOKEN": "hunter2", "SKIPPED": None})
    assert "hunter2" not in repr(inline) and "TOKEN" not in repr(inline)
    assert repr(inline) == "Secret.from_dict(<1 keys>)"
    assert repr(rayfn.Secret.from_name("db")) == "Secret.from_name('db')"
    with pytest.raises(InvalidError):
        rayfn.Secret.from_dict({"BAD KEY": "v"})
    with pytest.raises(InvalidError):
        rayfn.Secret.from_name("no/slashes")


def test_from_dotenv_reads_a_directory_or_a_file_next_to_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# a comment\nA=1\nexport B='two words'\n")
    (tmp_path / "prod.env").write_text("C=3\n")
    (tmp_path / "main.py").write_text("")
    assert rayfn.Secret.from_dotenv(tmp_path)._values == {"A": "1", "B": "two words"}
    assert rayfn.Secret.from_dotenv(tmp_path / "main.py")._values == {"A": "1",
                                                                      "B": "two words"}
    assert rayfn.Secret.from_dotenv(tmp_path, filename="prod.env")._values == {"C": "3"}
    with pytest.raises(NotFoundError, match="no missing.env"):
        rayfn.Secret.from_dotenv(tmp_path, filename="missing.env")


def test_from_local_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYFN_TEST_SECRET_A", "a")
    monkeypatch.delenv("RAYFN_TEST_SECRET_MISSING", raising=False)
    secret = rayfn.Secret.from_local_environ(["RAYFN_TEST_SECRET_A"])
    assert secret._values == {"RAYFN_TEST_SECRET_A": "a"}
    with pytest.raises(InvalidError, match="RAYFN_TEST_SECRET_MISSING"):
        rayfn.Secret.from_local_environ(["RAYFN_TEST_SECRET_A", "RAYFN_TEST_SECRET_MISSING"])


def test_store_round_trip_on_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    with store.transaction():
        assert store.put_secret("db", {"USER": "u", "PASS": "p"}, overwrite=False, now=1.0)
        assert not store.put_secret("db", {"USER": "x"}, overwrite=False, now=2.0)
        assert store.put_secret("api", {"KEY": "k"}, overwrite=False, now=3.0)
    assert store.secret_values("db") == {"USER": "u", "PASS": "p"}
    with store.transaction():
        assert store.put_secret("db", {"USER": "v"}, overwrite=True, now=4.0)
    store.close()

    reopened = SqliteStore(path)  # durable: a new connection on the same file
    listed = reopened.list_secrets()
    assert [(s.name, s.keys, s.created_at, s.updated_at) for s in listed] == [
        ("api", ("KEY",), 3.0, 3.0), ("db", ("USER",), 1.0, 4.0)]
    assert reopened.secret_values("db") == {"USER": "v"}
    assert reopened.missing_secrets(["db", "nope", "api"]) == ["nope"]
    with reopened.transaction():
        assert reopened.delete_secret("db") and not reopened.delete_secret("db")
    assert reopened.secret_values("db") is None
    reopened.close()
