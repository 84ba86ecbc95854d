"""What ``@app.function()`` and ``@app.cls()`` accept beyond the options rayfn acts on:
Modal's options that mean nothing on Ray (accepted, listed in docs/modal.md), Modal's
older names for options rayfn has, and anything else: an InvalidError naming it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rayfn.cloud_bucket_mount import CloudBucketMount
from rayfn.exception import InvalidError
from rayfn.image import Image
from rayfn.secret import Secret
from rayfn.volume import Volume

__all__ = ["Environment", "WITHOUT_MEANING", "split_options"]

# Modal options with no meaning on a Ray cluster. Accepted so Modal programs run as they
# are; docs/modal.md says why each has none.
WITHOUT_MEANING = frozenset({
    "region", "cloud", "ephemeral_disk", "enable_memory_snapshot", "single_use_containers",
    "nonpreemptible", "restrict_modal_access", "i6pn", "include_source",
    "experimental_options", "serialized", "startup_timeout", "allow_cross_region_volumes",
    "checkpointing_enabled", "interactive", "max_inputs", "cloud_bucket_mounts",
    "_experimental_scheduler_placement", "_experimental_proxy_ip", "_experimental_gpus",
    "_experimental_enable_gpu_snapshot", "_experimental_custom_scaling_factor",
    "_experimental_restrict_output", "is_generator", "_experimental_group_size",
    "_experimental_concurrent_cancellations",
})
# Modal's older names for options rayfn has.
RENAMED = {
    "concurrency_limit": "max_containers",
    "keep_warm": "min_containers",
    "container_idle_timeout": "scaledown_window",
    "_experimental_buffer_containers": "buffer_containers",
}
# Options whose promise rayfn cannot keep: set, they fail rather than pass silently.
REFUSED = {
    "block_network": "rayfn cannot cut a call off the network; leave block_network unset",
    "proxy": "rayfn has no static-IP proxies; route through your cluster's own egress",
}


@dataclasses.dataclass(frozen=True)
class Environment:
    """Where a function's calls run: its image, the volumes mounted and secrets set."""

    image: Image | None = None
    volumes: tuple[tuple[str, Volume | CloudBucketMount], ...] = ()
    secrets: tuple[Secret, ...] = ()

    def under(self, outer: Environment) -> Environment:
        """This environment inside the app's: the function's image, or else the app's;
        the app's volumes and secrets, and the function's besides."""
        mounted = dict(outer.volumes)
        mounted.update(self.volumes)
        return Environment(self.image or outer.image, tuple(sorted(mounted.items())),
                           outer.secrets + self.secrets)

    def volume_names(self) -> list[tuple[str, str]]:
        """(mount path, volume name) pairs; a bucket mount is refused here, at deploy."""
        pairs = []
        for path, volume in self.volumes:
            if isinstance(volume, CloudBucketMount):
                raise volume.refuse(path)
            pairs.append((path, volume.name))
        return pairs


def environment_of(image: object = None, volumes: object = None, secrets: object = None,
                   env: object = None, network_file_systems: object = None) -> Environment:
    """Check the environment keywords of ``App``, ``@app.function()`` or ``@app.cls()``."""
    if image is not None and not isinstance(image, Image):
        raise InvalidError(f"image must be a rayfn.Image, not {type(image).__name__}")
    mounts: dict[str, Volume | CloudBucketMount] = {}
    for given in (volumes, network_file_systems):
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise InvalidError("volumes must be a dict of mount paths to Volumes")
        for path, volume in given.items():
            if not isinstance(volume, (Volume, CloudBucketMount)):
                raise InvalidError(f"volumes[{path!r}] must be a rayfn.Volume, not "
                                   f"{type(volume).__name__}")
            mounts[str(path)] = volume
    if secrets is not None and not isinstance(secrets, (list, tuple)):
        raise InvalidError("secrets must be a list of rayfn.Secret objects")
    secret_list = list(secrets or ())
    for secret in secret_list:
        if not isinstance(secret, Secret):
            raise InvalidError(f"secrets must be rayfn.Secret objects, not "
                               f"{type(secret).__name__}")
    if env is not None:
        if not isinstance(env, Mapping):
            raise InvalidError("env must be a dict of environment variables")
        image = (image or Image.debian_slim()).env(
            {k: v for k, v in env.items() if v is not None})
    return Environment(image, tuple(sorted(mounts.items())), tuple(secret_list))


def split_options(where: str, given: Mapping[str, Any]) -> tuple[dict[str, Any], Environment]:
    """Modal's extra keywords of ``where`` as rayfn's options, and its environment."""
    options: dict[str, Any] = {}
    environment: dict[str, Any] = {}
    for key, value in given.items():
        if key in ("image", "volumes", "secrets", "env", "network_file_systems"):
            environment[key] = value
        elif key in RENAMED:
            if value is not None:
                options[RENAMED[key]] = value
        elif key == "allow_concurrent_inputs":
            if value is not None:
                options["max_inputs"] = value
        elif key in REFUSED:
            if value:
                raise InvalidError(f"{where}: {key}: {REFUSED[key]}")
        elif key in WITHOUT_MEANING:
            continue
        else:
            raise InvalidError(f"{where} has no option {key!r}")
    return options, environment_of(**environment)
