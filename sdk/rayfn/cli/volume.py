"""``rayfn volume``: make, list, fill, read and delete volumes from outside the cluster
(through the registry, over Ray or REST as every command). ``cli/main.py`` registers the
group and gives its commands the CLI's error messages."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path, PurePosixPath

import click

from rayfn.cli.output import say, show, table
from rayfn.protocol.operations import RegistryApi

__all__ = ["volume_group"]


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(
        timespec="seconds")


@click.group(name="volume")
def volume_group() -> None:
    """Make, list, fill and read volumes (directories every node shares)."""


@volume_group.command(name="create")
@click.argument("name")
def volume_create(name: str) -> None:
    """Make the empty volume NAME."""
    from rayfn._client import get_client

    get_client().call(RegistryApi.volume_create, name, False)
    say(f"created volume {name!r}")


@volume_group.command(name="list")
def volume_list() -> None:
    """List the volumes."""
    from rayfn._client import get_client

    volumes = get_client().call(RegistryApi.volume_list)
    show(table(("volume", "created"), ((v.name, _when(v.created_at)) for v in volumes)))


@volume_group.command(name="ls")
@click.argument("name")
@click.argument("path", default="/")
@click.option("--recursive", "-r", is_flag=True, help="List subdirectories too.")
def volume_ls(name: str, path: str, recursive: bool) -> None:
    """List the files of volume NAME under PATH."""
    from rayfn.volume import FileEntryType, Volume

    entries = Volume.from_name(name).listdir(path, recursive=recursive)
    show(table(("path", "type", "size", "modified"),
               ((e.path, "dir" if e.type == FileEntryType.DIRECTORY else "file", e.size,
                 _when(e.mtime)) for e in entries)))


@volume_group.command(name="put")
@click.argument("name")
@click.argument("local_path", type=click.Path(exists=True, path_type=Path))
@click.argument("remote_path", default="/")
@click.option("--force", "-f", is_flag=True, help="Overwrite files already there.")
def volume_put(name: str, local_path: Path, remote_path: str, force: bool) -> None:
    """Upload LOCAL_PATH (a file or a directory) into volume NAME at REMOTE_PATH (into
    it when it ends with /)."""
    from rayfn.volume import Volume

    with Volume.from_name(name).batch_upload(force=force) as batch:
        if local_path.is_dir():
            batch.put_directory(local_path, remote_path)
        elif remote_path.endswith("/"):
            batch.put_file(local_path, str(PurePosixPath(remote_path) / local_path.name))
        else:
            batch.put_file(local_path, remote_path)
    say(f"uploaded {local_path} to {name}:{remote_path}")


@volume_group.command(name="get")
@click.argument("name")
@click.argument("remote_path")
@click.argument("local_path", default="-")
def volume_get(name: str, remote_path: str, local_path: str) -> None:
    """Download the file REMOTE_PATH of volume NAME to LOCAL_PATH (- : standard output)."""
    from rayfn.volume import Volume

    volume = Volume.from_name(name)
    if local_path == "-":
        volume.read_file_into_fileobj(remote_path, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(local_path)
    if target.is_dir():
        target = target / PurePosixPath(remote_path).name
    with target.open("wb") as f:
        volume.read_file_into_fileobj(remote_path, f)


@volume_group.command(name="rm")
@click.argument("name")
@click.argument("remote_path")
@click.option("--recursive", "-r", is_flag=True, help="Remove a directory and its files.")
def volume_rm(name: str, remote_path: str, recursive: bool) -> None:
    """Remove REMOTE_PATH from volume NAME."""
    from rayfn.volume import Volume

    Volume.from_name(name).remove_file(remote_path, recursive=recursive)
    say(f"removed {name}:{remote_path}")


@volume_group.command(name="delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
def volume_delete(name: str, yes: bool) -> None:
    """Delete volume NAME and every file in it."""
    from rayfn.volume import Volume

    if not yes:
        click.confirm(f"delete volume {name!r} and all its files?", abort=True)
    Volume.delete(name)
    say(f"deleted volume {name!r}")
