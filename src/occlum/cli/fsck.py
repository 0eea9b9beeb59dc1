"""``occlum fsck``: verify the instance's SEFS volumes, show live against stored bytes, compact."""

from __future__ import annotations

import click
from rich.table import Table

from occlum.abi.errors import SyscallError
from occlum.cli._terminal import console
from occlum.errors import UserError
from occlum.instance.layout import Instance
from occlum.instance.runspec import volumes

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _refuse_if_in_use(inst: Instance) -> None:
    from occlum.instance.wire import refuse_if_in_use

    refuse_if_in_use(inst)
    from occlum.instance.fusemount import refuse_if_mounted

    refuse_if_mounted(inst)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


@click.command(
    context_settings=CONTEXT, short_help="Verify the SEFS volumes; show live and stored bytes."
)
@click.option(
    "--compact",
    is_flag=True,
    help="Checkpoint each volume: fold its journal into its metadata and remove every object "
    "no committed state names.",
)
@click.option("--verify", is_flag=True, help="Also read and verify every file's contents.")
@click.pass_context
def fsck(ctx: click.Context, compact: bool, verify: bool) -> None:
    """Mount each persistent SEFS volume of the built instance (the root's writable layer and
    the sefs mounts of Occlum.json) as `occlum run` would, which verifies its superblock,
    metadata and journal, and print what it holds against what the host stores for it.

    Stored bytes are what the host allocated for the volume's files; garbage is the objects
    and journals no committed state names (left by a crash, or by deletes whose space is
    reclaimed at the next checkpoint). With --compact each volume is checkpointed, which
    removes them. The instance must not be running.

    \b
    Example:
      occlum fsck
      occlum fsck --compact
      occlum fsck --verify
    """
    from occlum.enclave.counter import platform_counters
    from occlum.fs.sefs import SefsFs
    from occlum.fs.sefs.space import volume_usage
    from occlum.fs.sefs.store import SUPERBLOCK

    inst = Instance.at(getattr(ctx.find_root().obj, "instance_dir", "."))
    inst.require()
    _refuse_if_in_use(inst)
    vols = volumes(inst)
    out = console()
    table = Table(title="SEFS volumes", show_edge=out.width >= 100)
    for col in ("mount", "files", "live", "stored", "garbage", "journal", "reserve", "state"):
        table.add_column(col, justify="left" if col in ("mount", "state") else "right")
    failed = False
    for v in vols:
        if not (v.storage / SUPERBLOCK).exists():
            table.add_row(v.target, "", "", "", "", "", "", "not created yet")
            continue
        try:
            fs = SefsFs(v.storage, v.key, mac_only=v.mac_only, counters=platform_counters())
        except SyscallError as e:
            table.add_row(v.target, "", "", "", "", "", "", f"[red]{e.why or e}[/red]")
            failed = True
            continue
        try:
            state = "ok"
            if verify and (bad := fs.verify()):
                state = f"[red]{len(bad)} files fail verification: {bad[0]}[/red]"
                failed = True
            before = volume_usage(fs)
            if compact:
                fs.compact()
                after = volume_usage(fs)
                state += f", compacted from {_size(before.store.total)}"
            else:
                after = before
            u = after.store
            table.add_row(
                v.target, str(after.files), _size(after.live_bytes), _size(u.total),
                _size(u.garbage_bytes), _size(u.journal_bytes), _size(u.reserve_bytes), state,
            )  # fmt: skip
        except SyscallError as e:
            table.add_row(v.target, "", "", "", "", "", "", f"[red]{e.why or e}[/red]")
            failed = True
        finally:
            fs.close(commit=False)
    if not vols:
        raise UserError("the instance has no persistent SEFS volume")
    out.print(table)
    ctx.exit(1 if failed else 0)
