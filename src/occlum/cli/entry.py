"""The ``occlum`` console script.

``occlum exec`` is the one command whose start-up time users feel on every call (it is the
``docker exec`` of a started instance), so a plain ``occlum [--instance-dir DIR] exec
[--tty|--no-tty] PROGRAM [ARGS...]`` goes straight to a client, without loading the
command-line framework, the configuration schema and the LibOS (about 0.5 s of imports):
the native one that ``occlum start`` put at ``run/occlum-exec`` (this process becomes it,
see :mod:`occlum.instance.exec_native`), else the Python one.
An ``occlum [--instance-dir DIR] run ...`` goes to the user's zygote (:mod:`occlum.cli.fastrun`),
a process that has the LibOS imported and forks the run; when the zygote cannot serve it
exactly as this process would (see docs/internals.md), the run takes the direct path.
Everything else, ``--help`` and the shell's completion requests (``_OCCLUM_COMPLETE`` set)
included, goes to the full command line of :mod:`occlum.cli.main`.
"""

from __future__ import annotations

import os
import sys

from occlum.instance.wire import NATIVE_CLIENT_NAME


def _plain_exec(args: list[str]) -> tuple[str, bool | None, list[str]] | None:
    """(instance dir, tty choice, argv) of a plain ``exec``; None for anything else."""
    instance_dir = "."
    i = 0
    while i < len(args) and args[i] != "exec":
        arg = args[i]
        if arg == "--instance-dir" and i + 1 < len(args):
            instance_dir = args[i + 1]
            i += 2
        elif arg.startswith("--instance-dir="):
            instance_dir = arg.split("=", 1)[1]
            i += 1
        else:
            return None
    rest = args[i + 1 :]
    if not rest:
        return None
    use_tty: bool | None = None
    if rest[0] in ("--tty", "--no-tty"):
        use_tty = rest[0] == "--tty"
        rest = rest[1:]
    if not rest or rest[0].startswith("-"):
        return None  # --help, a misspelt option, a missing program: the full command line
    return instance_dir, use_tty, rest


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down: a run has closed and committed everything
    it opened, and freeing the LibOS's objects one by one took longer than the run itself."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF)


def internal_error(exc: BaseException) -> int:
    """A bug of the command or the LibOS (no bad input: that is a ``UserError``, said in one
    line where it is found): one line naming it, the traceback only when the log level asks
    for it; the exit code."""
    if os.environ.get("OCCLUM_LOG_LEVEL", "").lower() in ("debug", "trace"):
        import traceback

        traceback.print_exception(exc)
        hint = ""
    else:
        hint = " (OCCLUM_LOG_LEVEL=debug prints where)"
    print(f"occlum: error: internal error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
    return 1


def main(zygote: bool = True) -> None:
    """The command line of ``sys.argv``; ``zygote=False`` when the native front (``cli/front.py``)
    was declined by the zygote already: a run then takes the direct path without asking again."""
    try:
        _main(zygote)
    except Exception as exc:
        sys.exit(internal_error(exc))


def _main(zygote: bool) -> None:
    # a shell asking for completions (occlum completion) names its words in the environment
    completing = bool(os.environ.get("_OCCLUM_COMPLETE"))
    plain = None if completing else _plain_exec(sys.argv[1:])
    if plain is None and not completing:
        from occlum.cli import fastrun

        if fastrun.is_run(sys.argv[1:]):
            code = fastrun.run_via_zygote(sys.argv[1:]) if zygote else None
            direct = fastrun.plain_run(sys.argv[1:]) if code is None else None
            if direct is not None:
                code = fastrun.run_direct(*direct)
            if code is not None:
                _exit_now(code)
    if plain is None:
        from occlum.cli.main import main as full_main

        full_main()
        return
    instance_dir, use_tty, argv = plain
    native = os.path.join(instance_dir, "run", NATIVE_CLIENT_NAME)
    if os.access(native, os.X_OK):
        tty_flag = [] if use_tty is None else ["--tty" if use_tty else "--no-tty"]
        try:
            os.execv(native, [native, "--instance-dir", instance_dir, *tty_flag, "--", *argv])
        except OSError:
            pass  # it cannot run: the Python client does the work
    sys.exit(python_exec(instance_dir, use_tty, argv))


def python_exec(instance_dir: str, use_tty: bool | None, argv: list[str]) -> int:
    """``occlum exec`` by the Python client; the exit code."""
    from occlum.errors import UserError
    from occlum.instance.client import run_exec

    try:
        if not os.path.isfile(os.path.join(instance_dir, "Occlum.json")):
            raise UserError(
                f"not an Occlum instance directory: {os.path.abspath(instance_dir)} (no "
                "Occlum.json; create one with `occlum new DIR` or `occlum init`)"
            )
        run_dir = os.path.join(instance_dir, "run")
        code = run_exec(run_dir, argv, dict(os.environ), use_tty=use_tty)
    except UserError as e:
        if not e.shown:
            print(f"occlum: error: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        code = 130
    return code
