"""``testbed images ...``: the Docker backend's node image, built offline from a host wheelhouse."""

from __future__ import annotations

from typing import Annotated

import typer

from testbed.cli.common import err, out, reports_errors, require_root
from testbed.errors import ExitCode

app = typer.Typer(no_args_is_help=True, help="Node images for the docker backend.")


@app.command("build")
@reports_errors
def images_build(
    base: Annotated[
        str | None,
        typer.Option(
            help="base image (e.g. debian:bookworm-slim from your registry); "
            "default: a local Debian bookworm made with mmdebstrap"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even when the image is current")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="print nothing when the image is already current")] = False,
) -> None:
    """Build the node image (and, without --base, a local Debian base), offline from a host wheelhouse."""
    require_root()
    from testbed.images import build_images

    info = build_images(
        base, progress=lambda message: err.print(message, highlight=False, markup=False), force=force, quiet=quiet
    )
    if not quiet:
        out.print(f"node image ready: {info}", highlight=False)


@app.command("status")
@reports_errors
def images_status() -> None:
    """Whether the node image is current for this checkout (exit 1 when stale or missing)."""
    from testbed.images import ImageStatus
    from testbed.images import images_status as status

    state = status()
    out.print(f"node image: {state}", highlight=False)
    if state != ImageStatus.CURRENT:
        raise typer.Exit(ExitCode.FAILED)
