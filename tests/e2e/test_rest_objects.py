"""Dicts and Queues over the REST server, with httpx as a client in another language would:
keys and values are base64 of pickles, errors a JSON body with the rayfn exception."""

from __future__ import annotations

import base64
import pickle
from typing import Any

import httpx

import rayfn
from rayfn.protocol.ids import new_call_id


def b64(value: Any) -> str:
    # Protocol 5, as the SDK pickles (cloudpickle's default): a key pickled with another
    # protocol is other bytes, so another key.
    return base64.b64encode(pickle.dumps(value, protocol=5)).decode()


def unb64(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


def test_dict_and_queue_round_trip(rest: httpx.Client) -> None:
    name = f"rest-{new_call_id()[-10:].lower()}"
    missing = rest.post(f"/v1/dicts/{name}/get", json={"key": b64("k")})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"
    assert rest.post(f"/v1/objects/dict/{name}", json={"create_if_missing": True}
                     ).json()["name"] == name
    put = rest.post(f"/v1/dicts/{name}/put",
                    json={"items": [{"key": b64("k"), "value": b64({"v": 1})}]})
    assert put.json() == {"count": 1}
    assert unb64(rest.post(f"/v1/dicts/{name}/get", json={"key": b64("k")}
                           ).json()["value"]) == {"v": 1}
    assert rest.get(f"/v1/dicts/{name}/len").json() == {"count": 1}
    # what the REST client wrote, the SDK (over Ray) reads: the same pickled key
    assert rayfn.Dict.from_name(name)["k"] == {"v": 1}

    assert rest.post(f"/v1/objects/queue/{name}", json={"create_if_missing": True}
                     ).status_code == 200
    assert rest.post(f"/v1/queues/{name}/put", json={"values": [b64(1), b64(2)]}
                     ).json() == {"put": True}
    got = rest.post(f"/v1/queues/{name}/get", json={"n_values": 5, "wait": 1}).json()
    assert [unb64(v) for v in got["values"]] == [1, 2]
    bad = rest.post(f"/v1/queues/{name}/put", json={"values": [b64(1)], "partition": "p" * 65})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "InvalidError"
    not_base64 = rest.post(f"/v1/queues/{name}/put", json={"values": ["%%%"]})
    assert not_base64.status_code == 422

    for kind in ("dict", "queue"):
        assert rest.delete(f"/v1/objects/{kind}/{name}").status_code == 204
        assert rest.delete(f"/v1/objects/{kind}/{name}").status_code == 404
    unauthorized = httpx.post(f"{rest.base_url}/v1/dicts/{name}/get", json={"key": b64("k")})
    assert unauthorized.status_code == 401
