"""Images on a real Ray: packages installed into the call's environment, local files
placed at their remote paths, local modules importable, variables set."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

import rayfn
from rayfn.exception import InvalidError

HERE = Path(__file__).parent


def test_uv_pip_install_installs_the_package_for_the_call(unique_app: str) -> None:
    # pyjokes is not installed here: only the Image's environment has it (from the
    # package index this machine reaches).
    with pytest.raises(ImportError):
        __import__("pyjokes")
    image = rayfn.Image.debian_slim().uv_pip_install("pyjokes==0.8.3")
    app = rayfn.App(unique_app, image=image)

    @app.function(timeout=600)
    def joke_version() -> str:
        from importlib.metadata import version

        import pyjokes

        return version("pyjokes") if pyjokes.get_joke() else ""

    app.deploy()
    assert joke_version.remote() == "0.8.3"


def test_local_files_modules_and_env_reach_the_call(unique_app: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "nested" / "a.txt").write_text("alpha")
    single = tmp_path / "single.cfg"
    single.write_text("beta")
    remote = f"/tmp/rayfn-image-{uuid.uuid4().hex[:8]}"
    sys.path.insert(0, str(HERE / "image_source"))
    try:
        image = (rayfn.Image.debian_slim()
                 .add_local_dir(data, f"{remote}/data")
                 .add_local_file(single, f"{remote}/etc/single.cfg")
                 .add_local_python_source("shipped_helper")
                 .env({"IMAGE_FLAVOUR": "tested"}))
        app = rayfn.App(unique_app)

        @app.function(image=image)
        def look() -> dict[str, str]:
            import os

            import shipped_helper

            return {"dir": open(f"{remote}/data/nested/a.txt").read(),
                    "file": open(f"{remote}/etc/single.cfg").read(),
                    "module": shipped_helper.GREETING,
                    "env": os.environ["IMAGE_FLAVOUR"]}

        app.deploy()
    finally:
        sys.path.remove(str(HERE / "image_source"))
        sys.modules.pop("shipped_helper", None)
    assert look.remote() == {"dir": "alpha", "file": "beta",
                             "module": "shipped from the deploying machine",
                             "env": "tested"}


def test_a_step_that_needs_a_container_build_fails_the_deploy(unique_app: str) -> None:
    app = rayfn.App(unique_app, image=rayfn.Image.debian_slim().run_commands("make"))

    @app.function()
    def f() -> None: ...

    with pytest.raises(InvalidError, match=r"run_commands\(\) needs a container image"):
        app.deploy()


def test_apt_install_of_a_package_the_node_lacks_fails_the_deploy(unique_app: str) -> None:
    app = rayfn.App(unique_app,
                    image=rayfn.Image.debian_slim().apt_install("no-such-package-rayfn"))

    @app.function()
    def f() -> None: ...

    with pytest.raises(InvalidError, match="apt_install.*not installed on this node"):
        app.deploy()
