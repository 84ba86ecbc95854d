"""Image builders: Ray runtime environments, Dockerfiles, and what is refused at deploy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rayfn import Image
from rayfn.exception import InvalidError


def test_pip_and_uv_options_become_ray_install_options() -> None:
    image = Image.debian_slim().pip_install("rich", index_url="https://pypi.example/simple",
                                            pre=True)
    assert image.runtime_env() == {"pip": {
        "packages": ["rich"],
        "pip_install_options": ["--index-url", "https://pypi.example/simple", "--pre"]}}
    uv = Image.debian_slim().pip_install("a").uv_pip_install("b", extra_options="--no-cache")
    assert uv.runtime_env() == {"uv": {"packages": ["a", "b"],
                                       "uv_pip_install_options": ["--no-cache"]}}


def test_requirements_and_pyproject_are_read_here(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned\nrequests==2.32.0\n\n-r other.txt\nnumpy  # math\n")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["httpx"]\n'
                         '[project.optional-dependencies]\nplot = ["matplotlib"]\n')
    image = (Image.debian_slim().pip_install_from_requirements(requirements)
             .pip_install_from_pyproject(pyproject, optional_dependencies=["plot"]))
    assert image.runtime_env()["pip"] == ["requests==2.32.0", "numpy", "httpx", "matplotlib"]
    with pytest.raises(InvalidError, match="cannot read"):
        Image.debian_slim().pip_install_from_requirements(tmp_path / "missing.txt")


@pytest.mark.parametrize("step", [
    lambda i: i.run_commands("echo hi"), lambda i: i.dockerfile_commands("RUN x"),
    lambda i: i.micromamba_install("numpy"), lambda i: i.run_function(print),
])
def test_steps_that_need_a_container_build_fail_at_deploy_not_before(step: Any) -> None:
    image = step(Image.debian_slim())  # the file's top level still builds
    with pytest.raises(InvalidError, match=r"needs a container image.*rayfn image build"):
        image.runtime_env()
    assert step(Image.from_registry("me/built:1")).runtime_env()["image_uri"] == "me/built:1"


def test_apt_install_is_satisfied_by_what_the_node_has() -> None:
    assert Image.debian_slim().apt_install("libc6").runtime_env() == {}
    with pytest.raises(InvalidError, match="no-such-pkg-rayfn"):
        Image.debian_slim().apt_install("no-such-pkg-rayfn").runtime_env()


@pytest.mark.parametrize("package", ["", " ", 3, None])
def test_bad_package_names(package: Any) -> None:
    for method in ("pip_install", "uv_pip_install", "apt_install", "run_commands"):
        with pytest.raises(InvalidError, match=method):
            getattr(Image.debian_slim(), method)(package)


def test_dockerfile_renders_every_step_in_order(tmp_path: Path) -> None:
    image = (Image.debian_slim(python_version="3.12").apt_install("libgomp1")
             .uv_pip_install("scikit-learn").env({"A": "1"}).workdir("/app")
             .add_local_dir(tmp_path, "/app/data").run_commands("python -V")
             .entrypoint(["python", "-m", "app"]))
    assert image.dockerfile().splitlines() == [
        "FROM python:3.12-slim-bookworm",
        "RUN apt-get update && apt-get install -y --no-install-recommends libgomp1"
        " && rm -rf /var/lib/apt/lists/*",
        "RUN pip install uv && uv pip install --system scikit-learn",
        "ENV A=1",
        "WORKDIR /app",
        f"COPY {tmp_path} /app/data",
        "RUN python -V",
        'ENTRYPOINT ["python", "-m", "app"]',
    ]


def test_rayfn_image_build_prints_the_dockerfiles(tmp_path: Path) -> None:
    app_file = tmp_path / "built_app.py"
    app_file.write_text(
        "import rayfn as modal\n"
        "app = modal.App('built', image=modal.Image.debian_slim().pip_install('rich'))\n"
        "@app.function()\ndef a(): ...\n"
        "@app.function(image=modal.Image.from_registry('nvidia/cuda:12').run_commands('x'))\n"
        "def b(): ...\n")
    done = subprocess.run([sys.executable, "-m", "rayfn.cli.main", "image", "build",
                           str(app_file), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "Dockerfile.a").read_text().splitlines()[1] == \
        "RUN pip install rich"
    assert (tmp_path / "out" / "Dockerfile.b").read_text().startswith("FROM nvidia/cuda:12\n")
