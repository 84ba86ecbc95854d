"""What a call's process needs besides its code: volumes mounted and secrets set.

The registry puts a description in the runtime environment (``RAYFN_CALL_ENVIRONMENT``:
mount paths and secret *names*, never values), so Ray gives such a function worker
processes of its own. The first call in a process makes the mounts (a symbolic link from
the mount path to the volume's folder under the shared volume root) and asks the registry
for the secrets' values, which become environment variables of that process only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rayfn.exception import ExecutionError
from rayfn.options import FunctionOptions

__all__ = ["ENV_VAR", "prepare", "runtime_env_with", "mount"]

logger = logging.getLogger(__name__)

ENV_VAR = "RAYFN_CALL_ENVIRONMENT"
IMAGE_FILES_ENV_VAR = "RAYFN_IMAGE_FILES"  # rayfn.image.FILES_ENV_VAR
_prepared = False
_lock = threading.Lock()
# Asks the registry for secret values by name (set by the process's executor).
SecretFetcher = Callable[[list[str]], dict[str, str]]


def runtime_env_with(runtime_env: dict[str, Any], options: FunctionOptions,
                     volume_root: Path) -> dict[str, Any]:
    """``runtime_env`` with the function's mounts and secret names added."""
    if not options.volumes and not options.secrets:
        return runtime_env
    described = {
        "mounts": [[path, str(volume_root / name)] for path, name in options.volumes],
        "secrets": list(options.secrets),
    }
    env_vars = {**runtime_env.get("env_vars", {}), ENV_VAR: json.dumps(described)}
    return {**runtime_env, "env_vars": env_vars}


def prepare(fetch_secrets: SecretFetcher) -> None:
    """Make this process's mounts and set its secrets, once (later calls return at once)."""
    global _prepared
    if _prepared:
        return
    with _lock:
        if _prepared:
            return
        described = json.loads(os.environ.get(ENV_VAR) or "{}")
        for path, folder in described.get("mounts", ()):
            mount(Path(folder), Path(path))
        names = described.get("secrets", [])
        if names:
            os.environ.update(fetch_secrets(list(names)))
        place_image_files()
        _prepared = True


def mount(folder: Path, at: Path) -> None:
    """Make ``at`` show ``folder``: a symbolic link, replaced if it links elsewhere (the
    path was a mount of another volume). A real file or a non-empty directory there is
    an error: nothing of the node's is hidden or removed."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if at.is_symlink():
            if os.readlink(at) == str(folder):
                return
        elif at.is_dir() and not any(at.iterdir()):
            at.rmdir()  # an empty directory (an image's mount point) becomes the mount
        elif at.exists():
            raise ExecutionError(f"cannot mount a volume at {at}: something is there already "
                                 f"on this node; choose another mount path")
        at.parent.mkdir(parents=True, exist_ok=True)
        staged = at.with_name(f".{at.name}.{uuid.uuid4().hex[:8]}")
        staged.symlink_to(folder, target_is_directory=True)
        os.replace(staged, at)  # atomic: a concurrent process sees the old or the new link
    except PermissionError as exc:
        raise ExecutionError(f"cannot mount a volume at {at}: {exc.strerror}; the worker "
                             f"user needs to be able to write {at.parent}") from None


def place_image_files() -> None:
    """The Image's ``add_local_dir``/``add_local_file`` content (shipped by Ray as
    ``py_modules`` packages) linked at its remote paths, and its ``workdir`` made the
    process's working directory."""
    described = json.loads(os.environ.get(IMAGE_FILES_ENV_VAR) or "{}")
    workdir = described.get("workdir")
    if workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        os.chdir(workdir)
    for shipped, remote in described.get("files", ()):
        package, _, file_name = shipped.partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ExecutionError(f"the Image's files {package} did not reach this worker")
        content = Path(list(spec.submodule_search_locations)[0]) / "content"
        source = content / file_name if file_name else content
        target = Path(remote)
        if not target.is_absolute():
            target = Path.cwd() / target
        if file_name and (remote.endswith("/") or target.is_dir()):
            target = target / file_name
        if file_name:
            _link_file(source, target)
        else:
            mount(source, target)


def _link_file(source: Path, at: Path) -> None:
    if at.is_symlink() and os.readlink(at) == str(source):
        return
    if at.exists() and not at.is_symlink():
        raise ExecutionError(f"cannot place an Image file at {at}: a file is there already")
    at.parent.mkdir(parents=True, exist_ok=True)
    staged = at.with_name(f".{at.name}.{uuid.uuid4().hex[:8]}")
    staged.symlink_to(source)
    os.replace(staged, at)


def secret_names(runtime_env: dict[str, Any]) -> Iterable[str]:
    """The secret names a runtime environment asks for (for the registry's checks)."""
    described = json.loads(runtime_env.get("env_vars", {}).get(ENV_VAR) or "{}")
    return list(described.get("secrets", ()))
