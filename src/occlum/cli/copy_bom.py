"""The ``copy_bom`` command: copy what a BOM file lists (and its ELF dependencies) into an image."""

from __future__ import annotations

import os
import sys

import click

from occlum import __version__
from occlum.cli._errors import UserErrorCommand, warn
from occlum.cli._terminal import RichProgress
from occlum.instance.bom import copy_bytes_total, execute_plan, plan_bom

# a bar on a terminal from this much work on: below it the copy is over before a bar helps
PROGRESS_MIN_BYTES = 16 << 20
PROGRESS_MIN_FILES = 1000
_VERBOSE_LEVELS = ("info", "debug", "trace")


@click.command(cls=UserErrorCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--file",
    "bom_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The BOM file (YAML) describing what to copy.",
)
@click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False),
    help="The destination root directory, usually an instance's image/.",
)
@click.option(
    "-i",
    "--include-dir",
    "include_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Where to look for included BOM files (after the including file's directory). Repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option("-v", "--verbose", is_flag=True, help="Print every operation as it is done.")
@click.version_option(__version__, "-V", "--version", prog_name="copy_bom")
def cli(
    bom_file: str, root: str, include_dirs: tuple[str, ...], dry_run: bool, verbose: bool
) -> None:
    """Copy the files a BOM file lists into ROOT, with their shared libraries.

    \b
    Example:
      copy_bom -f app.yaml --root image
      copy_bom -f app.yaml --root image --include-dir /opt/occlum/etc/template --dry-run

    OCCLUM_LOG_LEVEL=info (or debug, trace) also prints every operation.
    """
    plan = plan_bom(bom_file, root, include_dirs)
    for w in plan.warnings:
        warn("copy_bom", w)
    verbose = verbose or os.environ.get("OCCLUM_LOG_LEVEL", "").lower() in _VERBOSE_LEVELS
    if dry_run:
        for action in plan:
            click.echo(action.describe())
        return
    if verbose:
        for action in plan:
            click.echo(action.describe(), err=True)
    progress = RichProgress("copying", min_bytes=PROGRESS_MIN_BYTES, min_files=PROGRESS_MIN_FILES)
    progress.start(copy_bytes_total(plan), sum(1 for a in plan if a.kind == "copy"))
    try:
        report = execute_plan(plan, on_bytes=progress.advance)
    finally:
        progress.stop()
    mib = report.bytes_copied / (1 << 20)
    click.echo(
        f"copy_bom: {report.copied} files copied ({mib:.1f} MiB), {report.unchanged} unchanged, "
        f"{report.links} symlinks, {report.dirs} directories created",
        err=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="copy_bom")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
