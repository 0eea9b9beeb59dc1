"""What becomes of each x86-64 system call inside the LibOS, as the syscall table's rows say
(``table.rows()``: native, native or served, served or refused). ``python -m
occlum.syscalls.catalogue`` prints ``docs/syscalls.md``; a unit test checks that file.
"""

from __future__ import annotations

from occlum.syscalls.deviations import DEVIATIONS
from occlum.syscalls.table import Row, rows


def catalogue() -> list[Row]:
    """Every number of ``NR`` in order; ``ValueError`` for one in no class or in two."""
    return list(rows().values())


_HEAD = """\
# System calls

What becomes of every x86-64 Linux system call inside the LibOS (see `internals.md`):

- **native**: the seccomp filter lets it through; the host kernel runs it at full speed. It
  names no path, no process outside the instance and nothing of the machine.
- **native or served**: native, but the filter looks at its arguments and sends some forms to
  the LibOS (or refuses them), as the note says.
- **served full / partial**: the LibOS does what Linux does (partial: with the limits noted).
- **refused ERRNO**: the call fails with that errno, for the reason given; the first call of
  each prints a warning naming the program. ENOSYS where Linux itself may lack the call, so
  programs take their fallback; EPERM where it would act on the host.

A number above the last one here gives ENOSYS, as on this kernel. This page is made by
`python -m occlum.syscalls.catalogue > docs/syscalls.md`; a unit test fails when it is stale
or when a number is in no class.

| nr | system call | class | note |
| ---: | --- | --- | --- |
"""


def markdown() -> str:
    rows = [f"| {f.nr} | `{f.name}` | {f.kind} | {f.note.replace('|', '/')} |" for f in catalogue()]
    counts: dict[str, int] = {}
    for f in catalogue():
        key = f.kind if f.kind == "native or served" else f.kind.split()[0]
        counts[key] = counts.get(key, 0) + 1
    total = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    table = _HEAD + "\n".join(rows) + f"\n\n{len(rows)} numbers: {total}.\n"
    return (
        table
        + _DEVIATIONS_HEAD
        + "\n".join(
            f"| {', '.join(f'`{c}`' for c in d.calls)} | {d.what} | {d.why} |" for d in DEVIATIONS
        )
        + "\n"
    )


_DEVIATIONS_HEAD = """
## Deviations that stay

Where a served or native call knowingly differs from Linux, and why (`syscalls/deviations.py`).

| calls | what a program sees | why |
| --- | --- | --- |
"""


if __name__ == "__main__":
    print(markdown(), end="")
