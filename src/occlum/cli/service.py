"""``occlum start``, ``exec``, ``kill``, ``ps`` and ``stop``: a long-lived instance."""

from __future__ import annotations

import os
import signal
import time

import click
from rich.table import Table

from occlum.cli._terminal import console
from occlum.errors import UserError
from occlum.instance.layout import Instance

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _instance(ctx: click.Context) -> Instance:
    inst = Instance.at(getattr(ctx.find_root().obj, "instance_dir", "."))
    inst.require()
    return inst


def _signal_number(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        num = int(name)
        if num in set(signal.valid_signals()) or num == 0:
            return num
    else:
        name = name if name.startswith("SIG") else "SIG" + name
        with_sig = getattr(signal.Signals, name, None)
        if with_sig is not None:
            return int(with_sig)
    raise UserError(f"unknown signal {text!r} (use e.g. TERM, KILL, INT, HUP or a number)")


@click.command(
    context_settings=CONTEXT, short_help="Start the instance as a server for occlum exec."
)
@click.option(
    "--image-key",
    metavar="FILE",
    help="The key of an encrypted image, handed to init as /dev/image_key (as for run).",
)
@click.pass_context
def start(ctx: click.Context, image_key: str | None) -> None:
    """Boot the built instance as a background server that runs programs with `occlum exec`.

    One server runs per instance directory; it listens on run/occlum.sock and logs to
    run/server.log. Its processes share the instance's file systems and process table until
    `occlum stop`. `occlum run` is refused while the instance is started.

    \b
    Example:
      occlum start
      occlum exec /bin/hello_world
      occlum stop
    """
    from occlum.instance.runspec import to_run_spec
    from occlum.instance.server import start_server

    inst = _instance(ctx)
    from occlum.instance.fusemount import refuse_if_mounted

    refuse_if_mounted(inst)
    if inst.running_pids():
        pids = ", ".join(str(p) for p in inst.running_pids())
        raise UserError(f"the instance is running with occlum run (pid {pids}); wait for it to end")
    key_path = None if image_key is None else inst.path / image_key
    spec = to_run_spec(inst, (), os.environ, image_key=key_path, service=True)
    if spec.enclave is not None and spec.enclave.debuggable:  # `occlum gdb --pid` may attach
        from dataclasses import replace

        from occlum.kernel.spec import DebugStop

        spec = replace(spec, debug=DebugStop())
    config = inst.load_built_config().config

    def make_libos() -> object:
        from occlum.boot import new_libos

        return new_libos(spec)

    pid = start_server(inst.run_dir, make_libos, config)
    click.echo(f"occlum: instance started (server pid {pid}; log in run/server.log)", err=True)


@click.command(
    "exec",
    context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_interspersed_args": False},
    short_help="Run a program in the started instance.",
)
@click.option(
    "--tty/--no-tty",
    "use_tty",
    default=None,
    help="Give the program a pseudo-terminal (default: when stdin and stdout are a terminal).",
)
@click.argument("program")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, use_tty: bool | None, program: str, args: tuple[str, ...]) -> None:
    """Run PROGRAM with ARGS in the started instance; exit with its status.

    The program gets this command's stdin, stdout and stderr, or a terminal of its own when
    they are a terminal (an interactive shell works, with job control). Ctrl-C and SIGTERM
    reach the program. PROGRAM must lie under an entry point; the environment is env.default
    plus the variables of env.untrusted taken from this command's environment, as for run.

    \b
    Example:
      occlum exec /bin/hello_world
      occlum exec /bin/sh -c 'ls / | wc -l'
      occlum exec /bin/bash        # interactive, under a terminal
    """
    from occlum.instance.client import run_exec

    inst = _instance(ctx)
    code = run_exec(inst.run_dir, [program, *args], dict(os.environ), use_tty=use_tty)
    ctx.exit(code)


@click.command(
    context_settings=CONTEXT, short_help="Send a signal to a process of the started instance."
)
@click.option(
    "-s",
    "--signal",
    "sig",
    default="TERM",
    show_default=True,
    help="The signal to send, by name or number.",
)
@click.argument("pid", type=int)
@click.pass_context
def kill(ctx: click.Context, sig: str, pid: int) -> None:
    """Send a signal to process PID of the started instance (a pid as `occlum ps` shows).

    \b
    Example:
      occlum kill 7
      occlum kill -s INT 7
    """
    from occlum.instance.client import request

    num = _signal_number(sig)
    request(_instance(ctx).run_dir, {"op": "kill", "pid": pid, "sig": num})


@click.command(context_settings=CONTEXT, short_help="List the processes of the started instance.")
@click.pass_context
def ps(ctx: click.Context) -> None:
    """List the processes running in the started instance.

    \b
    Example:
      occlum ps
    """
    from occlum.instance.client import request

    rows = request(_instance(ctx).run_dir, {"op": "ps"})["ps"]
    table = Table(title="processes in the instance")
    for name, justify in (
        ("PID", "right"),
        ("PPID", "right"),
        ("STATE", "left"),
        ("THREADS", "right"),
        ("RSS", "right"),
        ("COMMAND", "left"),
    ):
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=name != "COMMAND",
            overflow="fold",
        )
    for r in rows:
        table.add_row(
            str(r["pid"]),
            str(r["ppid"]),
            r["state"],
            str(r["threads"]),
            f"{r['rss_kib'] / 1024:.1f}M",
            r["command"],
        )
    console().print(table)


@click.command(context_settings=CONTEXT, short_help="Stop the started instance.")
@click.option(
    "-t",
    "--time",
    "timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL for the programs still running.",
)
@click.pass_context
def stop(ctx: click.Context, timeout: float) -> None:
    """Stop the started instance: SIGTERM to its programs, SIGKILL after the timeout, then
    every file system is written back and the server ends.

    \b
    Example:
      occlum stop
      occlum stop -t 30
    """
    from occlum.instance.client import stop as stop_server

    inst = _instance(ctx)
    began = time.monotonic()
    stop_server(inst.run_dir, timeout)
    click.echo(f"occlum: instance stopped in {time.monotonic() - began:.1f} s", err=True)


COMMANDS = (start, exec_, kill, ps, stop)
