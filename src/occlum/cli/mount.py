"""``occlum mount`` and ``occlum umount``: an instance's SEFS volume opened on the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import click

from occlum.errors import UserError
from occlum.instance.layout import Instance

CONTEXT = {"help_option_names": ["-h", "--help"]}
READY = "occlum-mount-ready "
LOG_NAME = "mount.log"  # the background servers' errors
UMOUNT_WAIT = 120.0  # seconds for the server's commit after the unmount


def _inst(ctx: click.Context) -> Instance:
    return Instance.at(getattr(ctx.find_root().obj, "instance_dir", "."))


def _refuse_if_in_use(inst: Instance) -> None:
    from occlum.instance.wire import refuse_if_in_use

    refuse_if_in_use(inst)


@click.command(
    context_settings=CONTEXT, short_help="Open a SEFS volume read-write on the host (FUSE)."
)
@click.option(
    "--volume",
    "target",
    default="/",
    show_default=True,
    metavar="TARGET",
    help="Which volume: / (the root's writable layer, run/mount/__ROOT) or the target of a "
    "sefs mount of Occlum.json.",
)
@click.option(
    "--foreground", is_flag=True, help="Serve in this process until unmounted (Ctrl-C unmounts)."
)
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.pass_context
def mount(ctx: click.Context, target: str, foreground: bool, mountpoint: str) -> None:
    """Open a persistent SEFS volume of the built instance read-write at the host directory
    MOUNTPOINT, through FUSE, with the key `occlum run` derives for it (sealed to this
    enclave under the platform key), so that host tools can inspect and change it.

    The volume stays served by a background process until `occlum umount MOUNTPOINT` (or
    `fusermount3 -u MOUNTPOINT`), which commits it atomically, as an instance exit does. A
    file whose stored objects were tampered with fails to open with EIO. While mounted,
    `occlum run` and `occlum start` refuse; the instance must not be running or started.

    \b
    Example:
      occlum mount /mnt/root && ls -l /mnt/root && occlum umount /mnt/root
      occlum mount --volume /data /mnt/data
    """
    inst = _inst(ctx)
    inst.require()
    _refuse_if_in_use(inst)
    from occlum.instance.fusemount import _import_pyfuse3, mount_markers, serve

    _import_pyfuse3()  # before anything else: without the binding, say how to get it
    for m in mount_markers(inst):
        if m.target == target:
            raise UserError(
                f"SEFS volume {target} is already mounted at {m.mountpoint} (pid {m.pid})"
            )
    if foreground:

        def ready(mp: str) -> None:
            click.echo(f"Mounted SEFS volume {target} at {mp}; occlum umount {mp} commits it")
            sys.stdout.flush()

        serve(inst, target, mountpoint, ready)
        click.echo(f"Committed SEFS volume {target}")
        return
    _background(inst, target, mountpoint)


def _background(inst: Instance, target: str, mountpoint: str) -> None:
    """Start the server as a process of its own session; return once it serves (or say why
    it could not, in its own one line)."""
    # -P: nothing of the working directory on the module path
    argv = [sys.executable, "-P", "-m", "occlum.cli.mount", str(inst.path), target, mountpoint]
    child = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    line = child.stdout.readline()
    if line.startswith(READY):
        mp = line[len(READY) :].rstrip("\n")
        click.echo(f"Mounted SEFS volume {target} at {mp} (pid {child.pid}); occlum umount {mp}")
        return
    err = child.stderr.read().strip()
    code = child.wait()
    if err:
        click.echo(err, err=True)
    else:
        click.echo(f"occlum: error: the mount server ended with status {code}", err=True)
    sys.exit(code or 1)


def _server_main(instance_dir: str, target: str, mountpoint: str) -> None:
    """The background server: tells its parent when it serves, then lets go of the pipes."""
    from occlum.instance.fusemount import serve

    inst = Instance.at(instance_dir)

    def ready(mp: str) -> None:
        sys.stdout.write(f"{READY}{mp}\n")
        sys.stdout.flush()
        # the parent is gone from here on: what the server has to say goes to run/mount.log
        null = os.open(os.devnull, os.O_RDWR)
        log = os.open(inst.run_dir / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)

    try:
        serve(inst, target, mountpoint, ready)
    except UserError as e:
        print(f"occlum: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


@click.command(context_settings=CONTEXT, short_help="Unmount an occlum mount; commit the volume.")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.pass_context
def umount(ctx: click.Context, mountpoint: str) -> None:
    """Unmount MOUNTPOINT, served by `occlum mount` for this instance, and wait until the
    volume is committed.

    \b
    Example:
      occlum umount /mnt/root
    """
    from occlum.instance.fusemount import MOUNTS_DIR, error_path, mount_markers

    inst = _inst(ctx)
    inst.require()
    mp = os.path.realpath(mountpoint)
    found = [m for m in mount_markers(inst) if m.mountpoint == mp]
    if not found:
        raise UserError(f"{mountpoint} is not an occlum mount of {inst.path}")
    pid = found[0].pid
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is not None:
        r = subprocess.run([tool, "-u", mp], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            why = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"
            raise UserError(f"cannot unmount {mountpoint}: {why}")
    else:
        os.kill(pid, 15)  # the server unmounts itself at SIGTERM
    deadline = time.monotonic() + UMOUNT_WAIT
    marker = inst.run_dir / MOUNTS_DIR / str(pid)
    # the server removes its marker once the commit is done (or failed, saying why first)
    while marker.exists() and _alive(pid):
        if time.monotonic() > deadline:
            raise UserError(f"the mount server (pid {pid}) did not finish its commit in time")
        time.sleep(0.05)
    err = error_path(inst, pid)
    if err.exists():
        why = err.read_text().strip()
        err.unlink()
        raise UserError(why)
    click.echo(f"Unmounted {mp}; SEFS volume {found[0].target} committed")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no longer does: nobody may have reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


if __name__ == "__main__":
    _server_main(sys.argv[1], sys.argv[2], sys.argv[3])
