"""Which hosts count as this machine, and the warning for a token sent in clear to others.

No request is sent: constructing the HTTP client is enough to warn.
"""

from __future__ import annotations

import warnings

import pytest

from rayfn._client.http import HttpClient
from rayfn.network import InsecureTransportWarning, is_loopback
from rayfn.settings import get_settings


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1",
                                  "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.2", "192.168.1.5",
                                  "example.com", "localhost.example.com", "128.0.0.1",
                                  "::ffff:10.0.0.2", "fe80::1"])
def test_hosts_beyond_this_machine(host: str) -> None:
    assert not is_loopback(host)


def _client(url: str) -> HttpClient:
    return HttpClient(get_settings().model_copy(update={"server_url": url, "token": "t"}))


def test_plain_http_to_another_host_warns_once_per_url_at_the_callers_line() -> None:
    with pytest.warns(InsecureTransportWarning, match="plain http://") as record:
        _client("http://192.0.2.10:8000").close()
    assert len(record) == 1 and record[0].filename == __file__
    assert "http://192.0.2.10:8000" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _client("http://192.0.2.10:8000").close()  # this URL was warned about already
    with pytest.warns(InsecureTransportWarning):
        _client("http://[2001:db8::1]:8000").close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000",
                                 "http://[::1]:8000", "https://192.0.2.11:8443"])
def test_loopback_and_https_do_not_warn(url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _client(url).close()
