"""``occlum run --summary`` and ``occlum doctor``: what a program asked of the LibOS.

``--summary`` prints, when the program's tree has ended, a table of the system calls the LibOS
served for it: how many, how many failed, the time spent in the LibOS, and how well each is
supported. ``occlum doctor`` runs the program once with the memory and thread limits raised,
then names every call it made that the LibOS does not fully support, every resource it came
close to, and the ``Occlum.json`` values that let it run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from occlum.cli._terminal import console
from occlum.instance._validation import FieldProblem, format_size, parse_size
from occlum.instance.config import USER_ADDRESS_SPACE
from occlum.instance.layout import Instance
from occlum.instance.runspec import to_run_spec

if TYPE_CHECKING:
    from occlum.kernel.libos import LibOS
    from occlum.kernel.limits import Peaks
    from occlum.kernel.spec import RunSpec
    from occlum.kernel.stats import CallCount

MiB = 1 << 20
NEAR = 0.9  # a need at or above this share of the configured value is reported
DOCTOR_MIN_THREADS = 1024  # max_num_of_threads for the doctor's run, unless configured higher
NATIVE_NOTE = (
    "Native system calls (read, write, mmap, futex, ...) never reach the LibOS: not counted."
)
LEVEL_STYLE = {"full": "green", "partial": "yellow", "refused": "red", "unsupported": "red"}


def run_counted(inst: Instance, spec: RunSpec) -> tuple[int, LibOS]:
    """Run ``spec``'s program as ``occlum run`` does, keeping the LibOS for its counts."""
    from occlum.boot import new_libos
    from occlum.kernel import stages

    libos = new_libos(spec)
    with inst.running():
        try:
            code = int(stages.run(libos))
        except KeyboardInterrupt:
            code = 130
    return code, libos


def _time(ns: int) -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.3f} s"


def _size(n: int) -> str:
    """A size as Occlum.json writes it (MB are MiB), rounded up."""
    if n < MiB:
        return f"{-(-n // 1024)}KB"
    return f"{-(-n // MiB)}MB"


def _level(level: str) -> str:
    return f"[{LEVEL_STYLE.get(level, 'default')}]{level}[/]"


def _support(row: CallCount) -> str:
    """The support level; a refused call's errno and reason with it."""
    if row.level == "refused" and row.note:
        return f"{_level(row.level)} ({escape(row.note)})"
    return _level(row.level)


def print_summary(console: Console, libos: LibOS, argv: tuple[str, ...]) -> None:
    """The table of ``occlum run --summary``."""
    assert libos.stats is not None
    rows = libos.stats.made()
    table = Table(
        title=f"System calls served by the LibOS for {escape(' '.join(argv))}",
        caption="time: spent in the LibOS serving the calls",
        caption_justify="left",
        show_footer=True,
    )
    calls = sum(r.calls for r in rows)
    errors = sum(r.errors for r in rows)
    ns = sum(r.ns for r in rows)
    table.add_column("system call", footer="total")
    table.add_column("calls", justify="right", footer=str(calls))
    table.add_column("errors", justify="right", footer=str(errors))
    table.add_column("total time", justify="right", footer=_time(ns))
    table.add_column("mean", justify="right", footer=_time(ns // calls) if calls else "")
    table.add_column("support")
    for r in rows:
        table.add_row(
            r.name, str(r.calls), str(r.errors), _time(r.ns), _time(r.mean_ns), _support(r)
        )
    console.print(table)
    console.print(NATIVE_NOTE)


# -- occlum doctor -------------------------------------------------------------------------


@dataclasses.dataclass(slots=True, frozen=True)
class Need:
    """One resource limit: what is configured, what the program needed, what to set."""

    what: str
    key: str  # the Occlum.json key, e.g. resource_limits.user_space_size
    configured: int
    needed: int  # 0: not measured
    raised: int  # the value the doctor's run had (configured, if not raised)
    size: bool  # a memory size (else a count)
    why_unmeasured: str = ""

    @property
    def verdict(self) -> str:
        if not self.needed:
            return "not measured"
        if self.needed > self.configured:
            return "too small"
        if self.needed >= NEAR * self.configured:
            return "near the limit"
        return "enough"

    @property
    def suggestion(self) -> int | None:
        """A value with room to spare, when the configured one is not comfortably enough."""
        if self.verdict not in ("too small", "near the limit"):
            return None
        if self.size:
            step = 32 * MiB if self.needed >= 64 * MiB else MiB
            return max(self.configured, -(-(self.needed * 5 // 4) // step) * step)
        return max(self.configured, self.needed + 2, -(-(self.needed * 5) // 4))

    def show(self, n: int) -> str:
        return _size(n) if self.size else str(n)

    def json_value(self, n: int) -> str:
        return f'"{format_size(n)}"' if self.size else str(n)


def host_memory() -> int:
    """The host's MemTotal, in bytes (0 if unknown)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _needs(spec: RunSpec, libos: LibOS) -> list[Need]:
    limits = libos.limits
    peaks = limits.peaks
    assert peaks is not None
    max_size = int(spec.extra.get("user_space_max_size", "0") or 0)
    memory_key = "user_space_max_size" if max_size > spec.user_space_size else "user_space_size"
    return [
        Need(
            # both are bounded by it: each process's address space, and all the programs'
            # memory together (with the pages of the files they wrote)
            "address space (VmPeak), or memory of all programs",
            f"resource_limits.{memory_key}",
            limits.configured_address_space,
            max(peaks.address_space, peaks.memory),
            limits.address_space,
            size=True,
            why_unmeasured="no process ended with exit_group or exec'd",
        ),
        Need(
            "processes and threads at once",
            "resource_limits.max_num_of_threads",
            limits.configured_threads,
            peaks.tasks,
            limits.threads,
            size=False,
            why_unmeasured="needs a pids cgroup (root and the pids controller)",
        ),
        Need(
            "main stack (VmStk)",
            "process.default_stack_size",
            spec.default_stack_size,
            peaks.stack,
            spec.default_stack_size,
            size=True,
            why_unmeasured="no process ended with exit_group or exec'd",
        ),
    ]


def _unsupported_table(rows: list[CallCount]) -> Table:
    table = Table(title="System calls the LibOS does not fully support")
    table.add_column("system call")
    table.add_column("support")
    table.add_column("calls", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("note")
    for r in sorted(rows, key=lambda r: (-r.calls, r.name)):
        table.add_row(r.name, _level(r.level), str(r.calls), str(r.errors), escape(r.note))
    return table


def _needs_table(needs: list[Need]) -> Table:
    table = Table(title="Resource limits (measured with the limits raised)")
    table.add_column(
        "Occlum.json key (what was measured)", min_width=max(len(n.key) for n in needs)
    )
    table.add_column("now", justify="right")
    table.add_column("needed", justify="right")
    table.add_column("verdict")
    table.add_column("set to", justify="right")
    style = {"too small": "red", "near the limit": "yellow", "enough": "green"}
    for n in needs:
        what = n.what if n.needed else f"{n.what}: not measured, {n.why_unmeasured}"
        suggestion = n.suggestion
        table.add_row(
            f"{n.key}\n[dim]{escape(what)}[/]",
            n.show(n.configured),
            n.show(n.needed) if n.needed else "-",
            f"[{style.get(n.verdict, 'dim')}]{n.verdict}[/]",
            n.json_value(suggestion) if suggestion is not None else "",
        )
    return table


def print_doctor(
    console: Console, spec: RunSpec, libos: LibOS, argv: tuple[str, ...], code: int
) -> None:
    """The report of ``occlum doctor``."""
    assert libos.stats is not None and libos.limits.peaks is not None
    peaks: Peaks = libos.limits.peaks
    made = libos.stats.made()
    console.print(
        f"[bold]occlum doctor[/]: {escape(' '.join(argv))} ended with exit status {code}; it ran "
        f"with resource_limits.user_space_size {_size(libos.limits.address_space)} and "
        f"max_num_of_threads {libos.limits.threads}, to measure what it needs."
    )
    lacking = [r for r in made if r.level != "full"]
    if lacking:
        console.print(_unsupported_table(lacking))
    else:
        calls = sum(r.calls for r in made)
        console.print(
            f"Every system call that reached the LibOS ({calls} calls of {len(made)} kinds) is "
            "fully supported."
        )
    console.print(NATIVE_NOTE)
    needs = _needs(spec, libos)
    console.print(_needs_table(needs))
    largest = [
        f"largest {what}: {escape(exe)}"
        for what, exe in (("address space", peaks.address_space_by), ("stack", peaks.stack_by))
        if exe
    ]
    if largest:
        text = "; ".join(largest)
        console.print(text[0].upper() + text[1:] + ".")
    unmeasured = len(peaks.seen - peaks.ended)
    if unmeasured:
        console.print(
            f"{unmeasured} process(es) ended without exit_group (killed by a signal, or still "
            "running at the end): their last peaks are not measured."
        )
    lines: list[str] = []
    for n in needs:
        if n.needed and n.needed >= NEAR * n.raised and n.raised > n.configured:
            lines.append(
                f"# {n.key}: the program reached the raised value ({n.show(n.raised)}) too; "
                "run occlum doctor again with more"
            )
        suggestion = n.suggestion
        if suggestion is not None:
            lines.append(f"{n.key}: {n.json_value(suggestion)}  (now {n.json_value(n.configured)})")
    if any(not line.startswith("#") for line in lines):
        body = "\n".join(escape(line) for line in lines)
        body += "\n\nThen run `occlum build` again."
        console.print(Panel(body, title="Set in Occlum.json", expand=False))
    else:
        text = "The configured limits are enough for this run."
        if lines:
            text += "\n" + "\n".join(escape(line) for line in lines)
        console.print(Panel(text, title="Occlum.json", expand=False))


def _size_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int:
    if value is None:
        return 0
    try:
        size = parse_size(value)
    except FieldProblem as exc:
        raise click.BadParameter(f"{value!r} {exc.message}")
    if size > USER_ADDRESS_SPACE:
        raise click.BadParameter(
            f"{value!r} is more than a process can address on this machine "
            f'(at most "{format_size(USER_ADDRESS_SPACE)}")'
        )
    return size


@click.command(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
    },
    short_help="Run a program once and report what it needs.",
)
@click.option(
    "--instance-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The Occlum instance directory (default: occlum's --instance-dir, or the current one).",
)
@click.option(
    "--user-space-size",
    "raised_memory",
    metavar="SIZE",
    callback=_size_option,
    help="The address space the program may use during the measurement (default: the larger "
    "of the configured value and the host's memory).",
)
@click.option(
    "--max-threads",
    "raised_threads",
    type=click.IntRange(1, 65536),
    default=None,
    help=f"The processes and threads it may have during the measurement (default: the larger "
    f"of the configured value and {DOCTOR_MIN_THREADS}).",
)
@click.option(
    "--image-key",
    metavar="FILE",
    help="The key of an encrypted image, as for occlum run.",
)
@click.argument("program")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def doctor(
    ctx: click.Context,
    instance_dir: str | None,
    raised_memory: int,
    raised_threads: int | None,
    image_key: str | None,
    program: str,
    args: tuple[str, ...],
) -> None:
    """Run PROGRAM with ARGS once in the built instance, then report what it needs.

    The program runs as with `occlum run` (stdin, stdout and stderr are its own), but with
    the memory and thread limits raised, so that what it needs is measured rather than where
    it was cut off. Then a report on stderr names every system call it made that the LibOS
    does not fully support (unserved: ENOSYS; partial; refused), with counts and the LibOS's
    note; the peak address space, processes and threads, and main stack it used against the
    configured limits; and the Occlum.json values to set when a limit was too small or close.
    The exit status is the program's.

    \b
    Example:
      occlum doctor /bin/myserver --port 8080
      occlum doctor --instance-dir myapp --user-space-size 64GB /bin/java -jar app.jar
    """
    if instance_dir is None:
        instance_dir = getattr(ctx.find_root().obj, "instance_dir", ".")
    inst = Instance.at(instance_dir)
    from occlum.instance.wire import refuse_if_started

    refuse_if_started(inst.run_dir)
    from occlum.instance.fusemount import refuse_if_mounted

    refuse_if_mounted(inst)
    key_path = None if image_key is None else inst.path / image_key
    argv = (program, *args)
    spec = to_run_spec(inst, argv, os.environ, image_key=key_path)
    configured = max(spec.user_space_size, int(spec.extra.get("user_space_max_size", "0") or 0))
    spec = dataclasses.replace(
        spec,
        diagnose=True,
        raised_address_space=max(raised_memory or host_memory(), configured),
        raised_threads=max(raised_threads or DOCTOR_MIN_THREADS, spec.max_threads),
    )
    code, libos = run_counted(inst, spec)
    print_doctor(console(stderr=True), spec, libos, argv, code)
    ctx.exit(code)


def run_with_summary(inst: Instance, spec: RunSpec) -> int:
    """``occlum run --summary``: the program's exit status; the table is on stderr."""
    code, libos = run_counted(inst, dataclasses.replace(spec, summary=True))
    print_summary(console(stderr=True), libos, spec.argv)
    return code


__all__ = ["doctor", "host_memory", "print_doctor", "print_summary", "run_with_summary"]
