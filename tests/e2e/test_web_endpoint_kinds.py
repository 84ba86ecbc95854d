"""Modal's four web endpoint kinds end to end, under ``rayfn serve`` (a real subprocess)
and on Ray Serve (``rayfn deploy``, ``with app.run()``); and what remote calls print,
shown by ``rayfn run`` and by ``rayfn.enable_output()`` in a plain script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from rayfn_service.processes import free_port

from .test_web_endpoints import Cli, _request, _stop_group, _wait_for, serve_process

__all__ = ["serve_process"]  # the fixture, shared with test_web_endpoints

ROOT = Path(__file__).resolve().parents[2]

KINDS_APP = '''
import subprocess
import sys

import flask

import rayfn as modal

app = modal.App("{name}")
flask_app = flask.Flask("kinds")


@flask_app.get("/hello")
def hello():
    return {{"from": "flask"}}


@app.function()
def double(x: int) -> int:
    print(f"doubling {{x}} remotely")
    return 2 * x


@app.function(cpu=0.1)
@modal.fastapi_endpoint()
def greet(name: str = "world"):
    return {{"greeting": f"hello {{name}}"}}


@app.function(cpu=0.1)
@modal.fastapi_endpoint(method="POST")
def total(item: dict):
    # A function of the same app, never deployed by hand.
    return {{"total": sum(item["values"]), "doubled": double.remote(item["values"][0])}}


@app.function(cpu=0.1)
@modal.wsgi_app()
def legacy():
    return flask_app


@app.function(cpu=0.1)
@modal.web_server({port}, startup_timeout=60)
def files():
    subprocess.Popen([sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1",
                      "--directory", {directory!r}])
'''


def _kinds_app(tmp_path: Path, name: str) -> tuple[Path, int]:
    port = free_port()
    public = tmp_path / "public"
    public.mkdir()
    (public / "page.txt").write_text("a static page\n")
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(KINDS_APP.format(name=name, port=port, directory=str(public)))
    return path, port


def _get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, timeout=60.0, follow_redirects=True, **kwargs)


def _check_kinds(urls: dict[str, str]) -> None:
    """Each endpoint answers over HTTP at its URL."""
    assert _get(urls["greet"], params={"name": "ray"}).json() == {"greeting": "hello ray"}
    posted = httpx.post(urls["total"], json={"values": [3, 4]}, timeout=120.0,
                        follow_redirects=True)
    assert posted.status_code == 200, posted.text
    assert posted.json() == {"total": 7, "doubled": 6}
    assert _get(urls["legacy"] + "/hello").json() == {"from": "flask"}
    page = _get(urls["files"] + "/page.txt")
    assert (page.status_code, page.text) == (200, "a static page\n")


def test_rayfn_serve_serves_every_kind_and_runs_the_other_functions_ephemerally(
    rayfn_cli: Cli, tmp_path: Path, serve_process: Any, unique_app: str
) -> None:
    path, _ = _kinds_app(tmp_path, unique_app)
    port = free_port()
    log = tmp_path / "serve.log"
    process = serve_process(str(path), "--port", str(port), "--no-reload", log=log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, log.read_text()
        return _request("GET", url + "/greet/")[0] == 200

    _wait_for(up, f"rayfn serve on {url}", 90, log)
    urls = dict(re.findall(r"web endpoint (\w+): (\S+)", log.read_text()))
    assert urls == {name: f"{url}/{name}" for name in ("files", "greet", "legacy", "total")}
    _check_kinds(urls)
    # double ran in an ephemeral app of its own, listed while rayfn serve runs.
    listed = rayfn_cli("app", "list", "--json").stdout
    ephemeral = re.findall(rf'"({re.escape(unique_app)}\.serve-[a-z0-9]+)"', listed)
    assert len(ephemeral) == 1, listed

    _stop_group(process)
    assert _request("GET", url + "/greet/") == (None, None)
    assert ephemeral[0] not in rayfn_cli("app", "list", "--json").stdout


def test_deploy_serves_every_kind_on_ray_serve(
    rayfn_cli: Cli, tmp_path: Path, unique_app: str
) -> None:
    path, _ = _kinds_app(tmp_path, unique_app)
    deployed = rayfn_cli("deploy", str(path)).stdout
    urls = dict(re.findall(r"web endpoint (\w+): (\S+)", deployed))
    base = f"http://127.0.0.1:{os.environ['RAYFN_RAY_SERVE_PORT']}/{unique_app}"
    try:
        assert urls == {name: f"{base}/{name}" for name in ("files", "greet", "legacy",
                                                            "total")}
        _check_kinds(urls)
    finally:
        rayfn_cli("app", "stop", unique_app)
    _wait_for(lambda: _request("GET", urls["greet"])[0] in (404, None),
              "the endpoints to be removed", 60)


RUN_APP = '''
import rayfn as modal

app = modal.App("{name}")


@app.function()
def shout(word: str) -> str:
    print(f"remote says {{word}}")
    print("and a line without an end", end="")
    return word.upper()


@app.local_entrypoint()
def main(word: str = "hi"):
    print("result", shout.remote(word))
'''

SCRIPT = '''
import sys

import httpx
import pytest

import rayfn

sys.path.insert(0, {folder!r})
from {module} import app, shout

web_app = rayfn.App("{name}-web")


@web_app.function(cpu=0.1)
@rayfn.fastapi_endpoint()
def hello(name: str):
    return {{"hello": name}}


with rayfn.enable_output():
    with app.run():
        print("returned", shout.remote("plainly"))
assert hello.get_web_url() is None
with web_app.run():
    url = hello.get_web_url()
    print("url", url)
    print("answer", httpx.get(url, params={{"name": "run"}}, timeout=120,
                              follow_redirects=True).json())
print("url after", hello.get_web_url())
'''


@pytest.mark.parametrize("transport", ["ray", "rest"])
def test_rayfn_run_shows_what_remote_calls_print(
    rayfn_cli: Cli, tmp_path: Path, unique_app: str, transport: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if transport == "rest":  # the CLI follows the output through the REST server
        from rayfn.settings import get_settings
        from rayfn_service.server_process import server_url

        settings = get_settings()
        monkeypatch.setenv("RAYFN_SERVER_URL", server_url(settings))
        monkeypatch.setenv("RAYFN_TOKEN", settings.read_token())
    path = tmp_path / "run_app.py"
    path.write_text(RUN_APP.format(name=unique_app))
    out = rayfn_cli("run", str(path), "--word", "hello").stdout
    assert "remote says hello\n" in out, out
    assert "and a line without an end\n" in out, out
    assert out.index("remote says hello") < out.index("result HELLO"), out


def test_enable_output_in_a_script_and_app_run_serving_an_endpoint(
    tmp_path: Path, unique_app: str
) -> None:
    (tmp_path / "run_app.py").write_text(RUN_APP.format(name=unique_app))
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(folder=str(tmp_path), module="run_app", name=unique_app))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=os.environ.copy())
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "remote says plainly\n" in out, out
    assert out.index("remote says plainly") < out.index("returned PLAINLY"), out
    match = re.search(r"^url (\S+)$", out, re.MULTILINE)
    assert match and match.group(1).startswith("http://127.0.0.1:"), out
    assert f"/{unique_app}-web.run-" in match.group(1)
    assert "answer {'hello': 'run'}" in out, out
    assert "url after None" in out, out
