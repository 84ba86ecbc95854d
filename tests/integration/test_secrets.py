"""Secrets on a real Ray: set in the calls of the functions that name them, and only there;
values never come back out of the registry other than into such a call's process."""

from __future__ import annotations

import pytest

import rayfn
from rayfn._client import get_client
from rayfn.exception import ConflictError, NotFoundError
from rayfn.protocol.ids import new_call_id
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.secrets import inline_secret_name

pytestmark = pytest.mark.usefixtures("transport")


def unique(prefix: str) -> str:
    return f"{prefix}-{new_call_id()[-10:].lower()}"


def test_a_named_secret_is_set_only_in_its_functions_calls(unique_app: str) -> None:
    name, value = unique("s"), unique("value")
    client = get_client()
    client.call(RegistryApi.secret_create, name, {"RAYFN_T_KEY": value}, False)
    with pytest.raises(ConflictError, match=name):
        client.call(RegistryApi.secret_create, name, {"RAYFN_T_KEY": "other"}, False)
    app = rayfn.App(unique_app)

    @app.function(secrets=[rayfn.Secret.from_name(name)])
    def with_secret() -> str:
        import os

        return os.environ["RAYFN_T_KEY"]

    @app.function()
    def without_secret() -> str | None:
        import os

        return os.environ.get("RAYFN_T_KEY")

    app.deploy()
    call = with_secret.spawn()
    assert call.get(timeout=120) == value
    assert without_secret.remote() is None
    # the value appears in none of what the registry shows
    shown = [repr(call.status()), call.logs(),
             repr(client.call(RegistryApi.function_info, unique_app, "with_secret")),
             repr(client.call(RegistryApi.list_apps)),
             repr(client.call(RegistryApi.secret_list))]
    assert all(value not in text for text in shown)
    listed = {s.name: s for s in client.call(RegistryApi.secret_list)}
    assert listed[name].keys == ("RAYFN_T_KEY",)
    client.call(RegistryApi.secret_delete, name)
    with pytest.raises(NotFoundError, match=name):
        client.call(RegistryApi.secret_delete, name)


def test_inline_secrets_are_stored_under_their_hash(unique_app: str) -> None:
    values = {"RAYFN_T_INLINE": unique("inline")}
    app = rayfn.App(unique_app, secrets=[rayfn.Secret.from_dict(values)])

    @app.function()
    def read() -> str:
        import os

        return os.environ["RAYFN_T_INLINE"]

    app.deploy()
    assert read.remote() == values["RAYFN_T_INLINE"]
    names = [s.name for s in get_client().call(RegistryApi.secret_list)]
    assert inline_secret_name(values) in names
    info = repr(get_client().call(RegistryApi.function_info, unique_app, "read"))
    assert values["RAYFN_T_INLINE"] not in info


def test_a_deploy_naming_a_missing_secret_fails_and_stores_nothing(unique_app: str) -> None:
    missing = unique("missing")
    app = rayfn.App(unique_app)

    @app.function(secrets=[rayfn.Secret.from_name(missing)])
    def needs() -> int:
        return 1

    with pytest.raises(NotFoundError, match=rf"secret '{missing}' \(used by function 'needs'\)"):
        app.deploy()
    assert unique_app not in [a.name for a in get_client().call(RegistryApi.list_apps)]
