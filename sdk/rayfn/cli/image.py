"""``rayfn image build FILE``: an app's Images as Dockerfiles, for a cluster that runs
calls in container images (what apt_install, run_commands and from_registry need)."""

from __future__ import annotations

from pathlib import Path

import click

from rayfn.cli.output import say
from rayfn.exception import Error
from rayfn.image import Image

__all__ = ["image_group"]


@click.group("image")
def image_group() -> None:
    """Render an app's Images."""


@image_group.command("build")
@click.argument("ref")
@click.option("--output", "output", type=click.Path(file_okay=False, path_type=Path),
              help="Write Dockerfile.<function> files here instead of printing them.")
def build(ref: str, output: Path | None) -> None:
    """Render the Image of each function of FILE[::APP] as a Dockerfile (no cluster
    needed). Build and push it, then use Image.from_registry(tag) in the app."""
    from rayfn.cli.loader import find_app, import_file, split_ref

    try:
        path, app_ref = split_ref(ref)
        app = find_app(import_file(path), path, app_ref)
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    rendered: dict[str, list[str]] = {}
    for name, environment in sorted(app._environments.items()):
        image = environment.under(app._environment).image or Image.debian_slim()
        rendered.setdefault(image.dockerfile(), []).append(name)
    for text, names in rendered.items():
        if output is None:
            say(f"# Dockerfile for {', '.join(names)}")
            click.echo(text)
            continue
        output.mkdir(parents=True, exist_ok=True)
        target = output / f"Dockerfile.{names[0]}"
        target.write_text(text)
        say(f"wrote {target} ({', '.join(names)})")
