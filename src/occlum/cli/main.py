"""The ``occlum`` command: new, init, build, run, status (Occlum's user interface)."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from occlum import __version__
from occlum.cli._errors import UserErrorGroup, warn
from occlum.cli._terminal import RichProgress, console
from occlum.errors import UserError
from occlum.instance.layout import (
    Instance,
    build_instance,
    format_time,
    init_instance,
    instance_status,
    new_instance,
)
from occlum.instance.runspec import to_run_spec

CONTEXT = {"help_option_names": ["-h", "--help"]}
PROGRESS_MIN_BYTES = 32 << 20
PROGRESS_MIN_FILES = 2000
# `occlum status`: "│ Occlum.json │ " + 64 hex digits + " │"
STATUS_FRAMED_WIDTH = 82


@dataclass(slots=True)
class Options:
    instance_dir: str


@click.group(cls=UserErrorGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="occlum")
@click.option(
    "--instance-dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default="the current directory",
    help="The Occlum instance directory to work on.",
)
@click.pass_context
def cli(ctx: click.Context, instance_dir: str) -> None:
    """Occlum for Python: run unmodified Linux programs inside a library OS.

    \b
    Example:
      occlum new myapp && cd myapp
      cp /path/to/hello image/bin/     # or: copy_bom -f app.yaml --root image
      occlum build
      occlum run /bin/hello arg1 arg2
    """
    ctx.obj = Options(instance_dir=instance_dir)


def _instance(ctx: click.Context) -> Instance:
    opts: Options = ctx.find_object(Options)  # type: ignore[assignment]
    return Instance.at(opts.instance_dir if opts is not None else ".")


@cli.command(context_settings=CONTEXT, short_help="Create a new instance directory.")
@click.argument("directory", type=click.Path())
@click.pass_context
def new(ctx: click.Context, directory: str) -> None:
    """Create a new instance directory DIRECTORY (it must not exist).

    It gets a default Occlum.json, an image/ to put programs in, initfs/, build/ and run/.
    A relative DIRECTORY is taken relative to --instance-dir.

    \b
    Example:
      occlum new myapp
    """
    base = _instance(ctx).path
    inst = new_instance(os.path.join(base, directory))
    click.echo(f"Created Occlum instance {inst.path}")


@cli.command(context_settings=CONTEXT, short_help="Make a directory an Occlum instance.")
@click.pass_context
def init(ctx: click.Context) -> None:
    """Make the instance directory (default: the current one) an Occlum instance.

    \b
    Example:
      mkdir myapp && cd myapp && occlum init
    """
    inst = init_instance(_instance(ctx).path)
    click.echo(f"Initialized Occlum instance {inst.path}")


@cli.command(context_settings=CONTEXT, short_help="Build the images; measure and sign the enclave.")
@click.option(
    "-f", "--force", is_flag=True, help="Copy and hash every file again, even unchanged ones."
)
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="RSA-3072 (e=3) PEM key that signs the enclave; a per-instance development key if absent.",
)
@click.option(
    "--image-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Encrypt the root image with this key (from `occlum gen-image-key`); relative to "
    "--instance-dir.",
)
@click.option(
    "--buildin-image-key",
    is_flag=True,
    help="Put the --image-key key into the initfs image as /etc/image_key.",
)
@click.option(
    "--init-ra",
    metavar="URL[#SECRET]",
    default=None,
    help="Attested boot: init fetches the --image-key key (secret SECRET, default image_key) "
    "from the key broker at URL (http://IPV4:PORT) after attesting; the key is not built in.",
)
@click.pass_context
def build(
    ctx: click.Context,
    force: bool,
    sign_key: Path | None,
    image_key: Path | None,
    buildin_image_key: bool,
    init_ra: str | None,
) -> None:
    """Validate Occlum.json, build image/ and initfs/ into images, and measure and sign the
    enclave (MRENCLAVE covers the LibOS, the configuration and every byte of the images;
    MRSIGNER is the signing key's).

    The images are integrity-only; with --image-key the root image is also encrypted (file
    contents, names, sizes, modes and symlink targets), deterministically: the same image/
    and key give the same MRENCLAVE. The initfs image is never encrypted; --buildin-image-key
    puts the key in it (initfs/ itself is left alone). --init-ra URL[#SECRET] builds the
    attested boot instead: the initfs image gets an init that attests to the key broker at URL
    (`occlum kbs serve`) and receives the key from it; URL and SECRET are measured, and the
    broker must hold the key file under that name (`occlum kbs add-secret SECRET --from-file
    KEYFILE --mrenclave $(occlum print mrenclave)`).

    Unchanged files (same size, mtime and mode) are not copied or hashed again unless --force
    is given. A failed build leaves the previous build intact.

    \b
    Example:
      occlum build
      occlum build -f --sign-key release-key.pem
      occlum gen-image-key image_key && occlum build --image-key image_key
      occlum build --image-key ../image_key --init-ra http://10.0.0.5:8700#myapp-key
    """
    inst = _instance(ctx)
    key_path = inst.path / image_key if image_key is not None else None
    progress = RichProgress(
        "copying image/", min_bytes=PROGRESS_MIN_BYTES, min_files=PROGRESS_MIN_FILES
    )
    try:
        report = build_instance(
            inst, force=force, progress=progress, sign_key=sign_key,
            image_key=key_path, buildin_image_key=buildin_image_key, init_ra=init_ra,
        )  # fmt: skip
    finally:
        progress.stop()
    for w in report.warnings:
        warn("occlum", w)
    mib = report.bytes_copied / (1 << 20)
    click.echo(
        f"Built {inst.path}: {report.files_copied} files copied ({mib:.1f} MiB), "
        f"{report.files_reused} unchanged, {report.symlinks} symlinks, {report.dirs} directories"
    )
    click.echo(f"Root image: {report.image_type}")
    click.echo(f"MRENCLAVE {report.mrenclave}")


@cli.command(
    context_settings={
        **CONTEXT,
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
    },
    short_help="Run a program in the built instance.",
)
@click.option("--strace", is_flag=True, help="Log every system call (log level trace).")
@click.option(
    "--summary",
    is_flag=True,
    help="At exit, print a table of the system calls the LibOS served for the program's "
    "process tree (counts, errors, time, support level) to stderr.",
)
@click.option(
    "--image-key",
    metavar="FILE",
    help="The key of an encrypted image (built with --image-key), handed to init as "
    "/dev/image_key. Relative to the instance directory.",
)
@click.argument("program")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    strace: bool,
    summary: bool,
    image_key: str | None,
    program: str,
    args: tuple[str, ...],
) -> None:
    """Boot the LibOS of a built instance and run PROGRAM with ARGS in it.

    PROGRAM is an absolute path inside the LibOS and must lie under one of the entry_points
    of Occlum.json. The program sees env.default plus the host variables named in
    env.untrusted. The exit status is the program's (128+N if killed by signal N).
    OCCLUM_LOG_LEVEL=off|error|warn|info|debug|trace sets the LibOS log level; --strace
    logs every call the LibOS serves, and --summary counts them (see also occlum doctor).

    The boot runs initfs/bin/init first: it mounts the root file system (decrypting an
    encrypted image with the key built into the initfs or given with --image-key) and exits;
    then PROGRAM starts.

    \b
    Example:
      occlum run /bin/hello_world
      OCCLUM_LOG_LEVEL=debug occlum run /bin/ls -l /
      occlum run --image-key image_key /bin/hello_world
      occlum run --summary /bin/ls -l /
    """
    inst = _instance(ctx)
    from occlum.instance.wire import refuse_if_started

    refuse_if_started(inst.run_dir)
    from occlum.instance.fusemount import refuse_if_mounted

    refuse_if_mounted(inst)
    key_path = None if image_key is None else inst.path / image_key
    spec = to_run_spec(
        inst,
        (program, *args),
        os.environ,
        log_level="trace" if strace else None,
        image_key=key_path,
    )
    if summary:
        from occlum.cli.doctor import run_with_summary

        ctx.exit(run_with_summary(inst, spec))
    boot = _import_boot()
    with inst.running():
        try:
            code = int(boot.run(spec))
        except KeyboardInterrupt:
            code = 130
    ctx.exit(code)


def _import_boot() -> Any:
    try:
        return importlib.import_module("occlum.boot")
    except ImportError as e:
        if e.name in ("occlum.boot", "occlum.kernel"):
            raise UserError("the LibOS kernel (occlum.boot) is not available in this build")
        raise


@cli.command(
    context_settings=CONTEXT, short_help="Show whether the instance is built, running, started."
)
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show whether the instance is built and whether it is running.

    \b
    Example:
      occlum status
      occlum --instance-dir myapp status
    """
    st = instance_status(_instance(ctx))
    out = console()
    # the frame only when MRENCLAVE still fits on one line beside it (80 columns: no frame)
    table = Table(
        title="Occlum instance", show_header=False, show_edge=out.width >= STATUS_FRAMED_WIDTH
    )
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("directory", st.instance_dir)
    table.add_row("Occlum.json", "valid" if st.config_ok else f"[red]{st.config_problem}[/red]")
    if st.built and st.built_at is not None:
        built = f"yes, at {format_time(st.built_at)}"
        if st.config_changed_since_build:
            built += " (Occlum.json changed since: run `occlum build`)"
    else:
        built = "no (run `occlum build`)"
    table.add_row("built", built)
    if st.built:
        from occlum.enclave.build_seal import read_measurement

        try:
            mrenclave, mrsigner = read_measurement(_instance(ctx).build_dir)
        except UserError as e:
            mrenclave, mrsigner = f"[red]{e}[/red]", ""
        table.add_row("MRENCLAVE", mrenclave)
        if mrsigner:
            table.add_row("MRSIGNER", mrsigner)
    running = ", ".join(f"pid {p}" for p in st.running_pids) if st.running_pids else "no"
    table.add_row("running", running)
    table.add_row("started", _server_state(_instance(ctx)))
    from occlum.instance.fusemount import mount_markers

    mounts = mount_markers(_instance(ctx))
    shown = [f"{m.target} at {m.mountpoint} (occlum mount, pid {m.pid})" for m in mounts]
    table.add_row("mounted", "\n".join(shown) if shown else "no")
    out.print(table)


def _server_state(inst: Instance) -> str:
    """The started-instance row of `occlum status`."""
    from occlum.instance.wire import LOG_NAME, SOCKET_NAME, lock_holder

    holder = lock_holder(inst.run_dir)
    if holder is None:
        if (inst.run_dir / SOCKET_NAME).exists():
            return f"no (a server ended without cleaning up: see run/{LOG_NAME})"
        return "no"
    from occlum.instance.client import request

    try:
        st = request(inst.run_dir, {"op": "status"}, timeout=5)["status"]
    except UserError as e:
        return f"[red]server pid {holder} does not answer: {e}[/red]"
    since = format_time(float(st["started_at"]))
    state = "stopping" if st["stopping"] else "yes"
    procs = int(st["processes"])
    return (
        f"{state}: server pid {st['pid']} since {since}, {procs} "
        f"{'process' if procs == 1 else 'processes'}, {st['execs']} occlum exec running"
    )


@cli.command("print", context_settings=CONTEXT, short_help="Print MRENCLAVE or MRSIGNER.")
@click.argument("what", type=click.Choice(["mrenclave", "mrsigner", "platform-root"]))
@click.pass_context
def print_(ctx: click.Context, what: str) -> None:
    """Print the built enclave's MRENCLAVE or MRSIGNER in hex.

    MRENCLAVE measures the LibOS, the configuration and every byte of the images; MRSIGNER is
    the hash of the signing key's modulus (--sign-key of `occlum build`, or the instance's
    development key). Simulation mode: both are computed as SGX does, without an SGX CPU.

    \b
    Example:
      occlum print mrenclave
      occlum print mrsigner
      occlum print platform-root > root.pem   # for `occlum verify-quote --root-cert`

    platform-root is the simulated platform's root certificate (PEM), which quotes made on
    this machine chain to (docs/attestation.md); it needs no instance.
    """
    if what == "platform-root":
        from occlum.enclave.platform_attest import load_attestation_platform

        click.echo(load_attestation_platform().root_pem.decode(), nl=False)
        return
    from occlum.enclave.build_seal import read_measurement  # `cryptography` loads in 50 ms

    inst = _instance(ctx)
    inst.require()
    mrenclave_hex, mrsigner_hex = read_measurement(inst.build_dir)
    click.echo(mrenclave_hex if what == "mrenclave" else mrsigner_hex)


@cli.command(
    "gen-image-key", context_settings=CONTEXT, short_help="Write a new key for an encrypted image."
)
@click.option("-f", "--force", is_flag=True, help="Replace FILE if it exists.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def gen_image_key(ctx: click.Context, force: bool, file: str) -> None:
    """Write a fresh random 128-bit key for an encrypted image to FILE (mode 0600).

    The file holds the key as hex pairs joined by dashes, as Occlum writes it, and is the
    argument of `occlum build --image-key`. A relative FILE is taken relative to
    --instance-dir. An existing FILE is kept unless --force is given.

    \b
    Example:
      occlum gen-image-key image_key
      occlum build --image-key image_key
    """
    from occlum.enclave.keys import write_image_key  # `cryptography` loads in 50 ms

    path = _instance(ctx).path / file
    write_image_key(path, force=force)
    click.echo(f"Wrote a new image key to {path}")


from occlum.cli.package import package  # noqa: E402 - a command of its own module
from occlum.cli.service import COMMANDS as SERVICE_COMMANDS  # noqa: E402

cli.add_command(package)
for _command in SERVICE_COMMANDS:
    cli.add_command(_command)


from occlum.cli.attest import verify_quote  # noqa: E402
from occlum.cli.completion import completion  # noqa: E402
from occlum.cli.doctor import doctor  # noqa: E402 - a command of its own module
from occlum.cli.fsck import fsck  # noqa: E402
from occlum.cli.gdb import gdb  # noqa: E402
from occlum.cli.kbs import kbs  # noqa: E402
from occlum.cli.mount import mount, umount  # noqa: E402

cli.add_command(doctor)
cli.add_command(fsck)
cli.add_command(gdb)
cli.add_command(verify_quote)
cli.add_command(mount)
cli.add_command(umount)
cli.add_command(kbs)
cli.add_command(completion)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="occlum")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
