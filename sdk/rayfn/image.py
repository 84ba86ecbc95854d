"""Image: the environment a function's calls run in, mapped onto Ray's runtime environments.

Each builder returns a new Image and records its step, so the Image can also be rendered
as a Dockerfile (``rayfn image build``). What each method does on Ray is in
docs/images.md; in short:

- ``pip_install``/``uv_pip_install`` (and from requirements or a pyproject): Ray's
  ``pip``/``uv`` runtime environment, installed on each node the first time it is used;
- ``env``: ``env_vars``; ``workdir``: the call's working directory;
- ``add_local_dir``/``add_local_file``: shipped with Ray's ``py_modules`` and linked at
  their remote path in the call's process; ``add_local_python_source``: ``py_modules``;
- ``from_registry``: Ray's container runtime environment (``image_uri``);
- ``apt_install``: satisfied when the packages are installed on the nodes already;
- steps that need a container build (``run_commands``, ``micromamba``, ...): refused at
  deploy, naming the method, unless the Image is a built one (``from_registry``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rayfn._deferred_imports import ImportBlock
from rayfn.exception import InvalidError

__all__ = ["Image"]

# The environment variable that tells a call's process where the Image's files go.
FILES_ENV_VAR = "RAYFN_IMAGE_FILES"
DEFAULT_PYTHON = "3.11"
# Methods whose effect needs a container image built from the Image's Dockerfile.
BUILD_STEPS = ("run_commands", "micromamba", "micromamba_install", "dockerfile_commands",
               "from_dockerfile", "run_function", "uv_sync", "pip_install_private_repos")


def _flat(method: str, items: Iterable[Any]) -> tuple[str, ...]:
    flat: list[Any] = []
    for item in items:
        if isinstance(item, str) or not isinstance(item, Iterable):
            flat.append(item)
        else:
            flat.extend(item)
    for value in flat:
        if not isinstance(value, str) or not value.strip():
            raise InvalidError(f"{method} takes package names, not {value!r}")
    return tuple(flat)


def _options(index_url: str | None, extra_index_url: str | None, find_links: str | None,
             pre: bool, extra_options: str) -> tuple[str, ...]:
    options: list[str] = []
    for flag, value in (("--index-url", index_url), ("--extra-index-url", extra_index_url),
                        ("--find-links", find_links)):
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise InvalidError(f"{flag[2:].replace('-', '_')} must be a URL")
            options += [flag, value]
    if pre:
        options.append("--pre")
    if extra_options:
        options += shlex.split(extra_options)
    return tuple(options)


@dataclasses.dataclass(frozen=True)
class Image:
    """A container environment, mapped onto Ray's runtime environments."""

    pip: tuple[str, ...] = ()
    env_vars: tuple[tuple[str, str], ...] = ()
    image_uri: str | None = None
    pip_options: tuple[str, ...] = ()
    use_uv: bool = False
    apt: tuple[str, ...] = ()
    python_version: str | None = None
    workdir_path: str | None = None
    files: tuple[tuple[str, str], ...] = ()  # (local absolute path, remote path)
    python_sources: tuple[str, ...] = ()  # module names shipped with py_modules
    entrypoint_args: tuple[str, ...] = ()
    build_steps: tuple[str, ...] = ()  # methods used that need a container build
    steps: tuple[tuple[str, str], ...] = ()  # (method, JSON of its arguments), in order

    def _with(self, method: str, arguments: object, **changes: Any) -> Image:
        step = (method, json.dumps(arguments, default=str))
        return dataclasses.replace(self, steps=self.steps + (step,), **changes)

    # ---- bases ---------------------------------------------------------------------

    @classmethod
    def debian_slim(cls, python_version: str | None = None, force_build: bool = False
                    ) -> Image:
        """The cluster's own environment (its nodes' Python and system packages)."""
        return cls(python_version=python_version)

    @classmethod
    def from_registry(cls, tag: str, *, add_python: str | None = None, secret: Any = None,
                      setup_dockerfile_commands: Sequence[str] = (), force_build: bool = False,
                      **_: Any) -> Image:
        """A container image from a registry: Ray's container runtime environment (the
        nodes need podman)."""
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidError("from_registry needs an image reference such as 'python:3.11'")
        return cls(image_uri=tag, python_version=add_python)

    @classmethod
    def micromamba(cls, python_version: str | None = None, force_build: bool = False
                   ) -> Image:
        return cls(python_version=python_version, build_steps=("micromamba",),
                   steps=(("micromamba", json.dumps([python_version])),))

    @classmethod
    def from_dockerfile(cls, path: str | Path, **_: Any) -> Image:
        return cls(build_steps=("from_dockerfile",),
                   steps=(("from_dockerfile", json.dumps([str(path)])),))

    # ---- Python packages -------------------------------------------------------------

    def pip_install(self, *packages: str | list[str], index_url: str | None = None,
                    extra_index_url: str | None = None, find_links: str | None = None,
                    pre: bool = False, extra_options: str = "", force_build: bool = False,
                    secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        flat = _flat("pip_install", packages)
        options = _options(index_url, extra_index_url, find_links, pre, extra_options)
        return self._with("pip_install", [flat, options], pip=self.pip + flat,
                          pip_options=self.pip_options + options)

    def uv_pip_install(self, *packages: str | list[str], requirements: Sequence[str] = (),
                       index_url: str | None = None, extra_index_url: str | None = None,
                       find_links: str | None = None, prerelease: str | None = None,
                       pre: bool = False, extra_options: str = "", force_build: bool = False,
                       uv_version: str | None = None, secrets: Sequence[Any] = (),
                       gpu: Any = None) -> Image:
        flat = _flat("uv_pip_install", packages)
        for path in requirements:
            flat += _requirements(path)
        options = _options(index_url, extra_index_url, find_links, pre, extra_options)
        if prerelease:
            options += ("--prerelease", prerelease)
        return self._with("uv_pip_install", [flat, options], pip=self.pip + flat,
                          pip_options=self.pip_options + options, use_uv=True)

    def pip_install_from_requirements(self, requirements_txt: str | Path, *,
                                      find_links: str | None = None,
                                      index_url: str | None = None,
                                      extra_index_url: str | None = None, pre: bool = False,
                                      extra_options: str = "", force_build: bool = False,
                                      secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        return self.pip_install(*_requirements(requirements_txt), index_url=index_url,
                                extra_index_url=extra_index_url, find_links=find_links,
                                pre=pre, extra_options=extra_options)

    def pip_install_from_pyproject(self, pyproject_toml: str | Path, *,
                                   optional_dependencies: Sequence[str] = (),
                                   **options: Any) -> Image:
        try:
            import tomllib  # type: ignore[import-not-found,unused-ignore]
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
        try:
            project = tomllib.loads(Path(pyproject_toml).read_text())["project"]
        except (OSError, KeyError, ValueError) as exc:  # TOMLDecodeError is a ValueError
            raise InvalidError(f"pip_install_from_pyproject: cannot read the [project] of "
                               f"{pyproject_toml}: {exc}") from None
        packages = list(project.get("dependencies", []))
        for extra in optional_dependencies:
            packages += project.get("optional-dependencies", {}).get(extra, [])
        keep = {k: v for k, v in options.items()
                if k in ("index_url", "extra_index_url", "find_links", "pre", "extra_options")}
        return self.pip_install(*packages, **keep)

    def uv_sync(self, uv_project_dir: str = "./", **_: Any) -> Image:
        return self._with("uv_sync", [uv_project_dir],
                          build_steps=self.build_steps + ("uv_sync",))

    def pip_install_private_repos(self, *repositories: str, **_: Any) -> Image:
        return self._with("pip_install_private_repos", list(repositories),
                          build_steps=self.build_steps + ("pip_install_private_repos",))

    # ---- system ----------------------------------------------------------------------

    def apt_install(self, *packages: str | list[str], force_build: bool = False,
                    secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        flat = _flat("apt_install", packages)
        return self._with("apt_install", [flat], apt=self.apt + flat)

    def run_commands(self, *commands: str | list[str], secrets: Sequence[Any] = (),
                     gpu: Any = None, force_build: bool = False) -> Image:
        flat = _flat("run_commands", commands)
        return self._with("run_commands", [flat],
                          build_steps=self.build_steps + ("run_commands",))

    def micromamba_install(self, *packages: str | list[str], spec_file: str | None = None,
                           channels: Sequence[str] = (), **_: Any) -> Image:
        flat = _flat("micromamba_install", packages) if packages else ()
        return self._with("micromamba_install", [flat, list(channels)],
                          build_steps=self.build_steps + ("micromamba_install",))

    def dockerfile_commands(self, *commands: str | list[str], **_: Any) -> Image:
        flat = _flat("dockerfile_commands", commands)
        return self._with("dockerfile_commands", [flat],
                          build_steps=self.build_steps + ("dockerfile_commands",))

    def run_function(self, raw_f: Callable[..., Any], **_: Any) -> Image:
        if not callable(raw_f):
            raise InvalidError(f"run_function takes a function, not {raw_f!r}")
        name = getattr(raw_f, "__name__", "function")
        return self._with("run_function", [name],
                          build_steps=self.build_steps + ("run_function",))

    def env(self, variables: Mapping[str, str]) -> Image:
        merged = dict(self.env_vars)
        for key, value in variables.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidError("env takes a mapping of strings to strings")
            merged[key] = value
        return self._with("env", dict(variables), env_vars=tuple(sorted(merged.items())))

    def workdir(self, path: str | Path) -> Image:
        return self._with("workdir", [str(path)], workdir_path=str(path))

    def entrypoint(self, entrypoint_commands: Sequence[str]) -> Image:
        """A container's entrypoint: no meaning for calls (Ray starts the process), kept
        for the rendered Dockerfile."""
        commands = tuple(entrypoint_commands)
        return self._with("entrypoint", [commands], entrypoint_args=commands)

    def shell(self) -> Image:
        return self

    def cmd(self, cmd: Sequence[str]) -> Image:
        return self._with("cmd", [list(cmd)])

    # ---- local files -----------------------------------------------------------------

    def add_local_dir(self, local_path: str | Path, remote_path: str, *, copy: bool = False,
                      ignore: Any = ()) -> Image:
        local = Path(local_path).expanduser().resolve()
        return self._with("add_local_dir", [str(local), remote_path],
                          files=self.files + ((str(local), remote_path),))

    def add_local_file(self, local_path: str | Path, remote_path: str, *,
                       copy: bool = False) -> Image:
        local = Path(local_path).expanduser().resolve()
        return self._with("add_local_file", [str(local), remote_path],
                          files=self.files + ((str(local), remote_path),))

    def add_local_python_source(self, *modules: str, copy: bool = False,
                                ignore: Any = ()) -> Image:
        for module in modules:
            if not isinstance(module, str) or not module.replace(".", "_").isidentifier():
                raise InvalidError(f"add_local_python_source takes module names, not "
                                   f"{module!r}")
        return self._with("add_local_python_source", list(modules),
                          python_sources=self.python_sources + tuple(modules))

    def imports(self) -> ImportBlock:
        """``with image.imports(): import torch``: an ImportError inside is suppressed
        here (the package may be only in the image); the block runs again in the worker,
        where an ImportError is an error."""
        return ImportBlock()

    # ---- what it becomes -------------------------------------------------------------

    def runtime_env(self) -> dict[str, Any]:
        """This image as a Ray ``runtime_env`` (empty for the cluster's own environment).
        Called at deploy: a step nothing on the cluster can honour raises here."""
        if self.build_steps and not self.image_uri:
            method = self.build_steps[0]
            raise InvalidError(
                f"Image.{method}() needs a container image built from this Image: run "
                f"`rayfn image build FILE` to render its Dockerfile, build and push it, "
                f"then use Image.from_registry('<your tag>')")
        missing = [p for p in self.apt if not _apt_installed(p)]
        if missing and not self.image_uri:
            raise InvalidError(
                f"Image.apt_install({', '.join(map(repr, missing))}): not installed on this "
                f"node, and rayfn cannot install system packages into a Ray worker; install "
                f"them on every node, or run `rayfn image build FILE`, build and push the "
                f"image, and use Image.from_registry('<your tag>')")
        env: dict[str, Any] = {}
        if self.pip:
            key = "uv" if self.use_uv else "pip"
            if self.pip_options:
                env[key] = {"packages": list(self.pip),
                            f"{key}_install_options" if key == "pip"
                            else "uv_pip_install_options": list(self.pip_options)}
            else:
                env[key] = list(self.pip)
        env_vars = dict(self.env_vars)
        files = [(_staged(local), remote) for local, remote in self.files]
        if files or self.workdir_path:
            env_vars[FILES_ENV_VAR] = json.dumps(
                {"files": [[package, remote] for package, remote in files],
                 "workdir": self.workdir_path})
        modules = [_module_path(name) for name in self.python_sources]
        modules += sorted({str(Path(tempfile.gettempdir()) / "rayfn-image-files"
                               / package.partition("/")[0]) for package, _ in files})
        if modules:
            env["py_modules"] = modules
        if env_vars:
            env["env_vars"] = env_vars
        if self.image_uri:
            env["image_uri"] = self.image_uri
        return env

    def dockerfile(self) -> str:
        """The Image as a Dockerfile, to build and push where a cluster runs containers."""
        base = self.image_uri or f"python:{self.python_version or DEFAULT_PYTHON}-slim-bookworm"
        lines = [f"FROM {base}"]
        for method, arguments in self.steps:
            lines += _dockerfile_lines(method, json.loads(arguments))
        return "\n".join(lines) + "\n"


def _dockerfile_lines(method: str, args: Any) -> list[str]:
    quote = " ".join
    if method in ("pip_install", "uv_pip_install"):
        packages, options = args
        tool = "uv pip install --system" if method == "uv_pip_install" else "pip install"
        prefix = "RUN pip install uv && " if method == "uv_pip_install" else "RUN "
        return [f"{prefix}{tool} {quote(map(shlex.quote, list(options) + list(packages)))}"]
    if method == "apt_install":
        return ["RUN apt-get update && apt-get install -y --no-install-recommends "
                + quote(map(shlex.quote, args[0])) + " && rm -rf /var/lib/apt/lists/*"]
    if method in ("run_commands", "dockerfile_commands"):
        prefix = "RUN " if method == "run_commands" else ""
        return [f"{prefix}{command}" for command in args[0]]
    if method == "env":
        return [f"ENV {key}={shlex.quote(value)}" for key, value in sorted(args.items())]
    if method == "workdir":
        return [f"WORKDIR {args[0]}"]
    if method in ("add_local_dir", "add_local_file"):
        return [f"COPY {args[0]} {args[1]}"]
    if method == "entrypoint":
        return [f"ENTRYPOINT {json.dumps(list(args[0]))}"]
    if method == "cmd":
        return [f"CMD {json.dumps(args[0])}"]
    if method == "micromamba_install":
        return ["RUN micromamba install -y " + quote(f"-c {c}" for c in args[1]) + " "
                + quote(args[0])]
    if method == "add_local_python_source":
        return [f"COPY {_module_path(name)} /root/{name.replace('.', '/')}" for name in args]
    return [f"# {method}({', '.join(map(str, args))}): run it in a step of your own"]


def _requirements(path: str | Path) -> tuple[str, ...]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidError(f"cannot read requirements file {path}: {exc.strerror}") from None
    return tuple(line.split("#", 1)[0].strip() for line in text.splitlines()
                 if line.split("#", 1)[0].strip() and not line.strip().startswith("-"))


def _apt_installed(package: str) -> bool:
    name = package.split("=", 1)[0].strip()
    if shutil.which("dpkg-query") is None:
        return False
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                            capture_output=True, text=True, check=False)
    return status.stdout.strip() == "install ok installed"


def _module_path(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise InvalidError(f"add_local_python_source: no module {name!r} here to ship")
    if spec.submodule_search_locations:
        return str(list(spec.submodule_search_locations)[0])
    if spec.origin is None or not os.path.isfile(spec.origin):
        raise InvalidError(f"add_local_python_source: module {name!r} has no source file")
    return spec.origin


def _staged(local: str) -> str:
    """``local`` copied into a package directory Ray can ship with ``py_modules`` (named
    by its content, so an unchanged folder is uploaded once); returns the package name."""
    source = Path(local)
    if not source.exists():
        raise InvalidError(f"add_local_dir/add_local_file: {local} does not exist")
    digest = hashlib.sha256(str(source).encode())
    for path in sorted(source.rglob("*")) if source.is_dir() else [source]:
        if path.is_file():
            digest.update(str(path.relative_to(source.parent)).encode())
            digest.update(path.read_bytes())
    package = f"rayfn_files_{digest.hexdigest()[:16]}"
    target = Path(tempfile.gettempdir()) / "rayfn-image-files" / package
    if not target.exists():
        staging = target.with_name(f".{package}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / "__init__.py").write_text("")
        if source.is_dir():
            shutil.copytree(source, staging / "content", symlinks=True)
        else:
            (staging / "content").mkdir()
            shutil.copy2(source, staging / "content" / source.name)
        os.replace(staging, target)
    return package if source.is_dir() else f"{package}/{source.name}"
