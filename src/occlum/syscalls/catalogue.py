"""What becomes of each x86-64 system call inside the LibOS: native, served or refused, from
the three lists that decide it (``seccomp.NATIVE_SYSCALLS`` and ``ARGUMENT_RULES``,
``table.SERVED``, ``refused.REFUSED``). ``python -m occlum.syscalls.catalogue`` prints
``docs/syscalls.md``; a unit test checks that file and that no number is left out.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from occlum.abi.syscalls import NR
from occlum.platform.seccomp import ARGUMENT_RULES, NATIVE_SYSCALLS
from occlum.syscalls.deviations import DEVIATIONS
from occlum.syscalls.refused import REFUSED
from occlum.syscalls.table import SERVED


@dataclass(frozen=True, slots=True)
class Fate:
    nr: int
    name: str
    kind: str  # "native", "served full", "served partial", "refused EPERM", ...
    note: str


def catalogue() -> list[Fate]:
    """Every number of ``NR`` in order; ``ValueError`` for one in no class or in two."""
    native = set(NATIVE_SYSCALLS)
    out: list[Fate] = []
    for name, nr in sorted(NR.items(), key=lambda item: item[1]):
        kinds: list[Fate] = []
        rule = ARGUMENT_RULES.get(name, "")
        if name in native:
            kinds.append(Fate(nr, name, "native", rule))
        if name in SERVED:
            _, _, level, note = SERVED[name]
            if rule:
                both = "; ".join(filter(None, (rule, note)))
                kinds.append(Fate(nr, name, "native or served", both))
            else:
                kinds.append(Fate(nr, name, f"served {level}", note))
        if name in REFUSED:
            err, why = REFUSED[name]
            kinds.append(Fate(nr, name, f"refused {errno.errorcode[err]}", why))
        if len(kinds) != 1:
            where = ", ".join(f.kind for f in kinds) or "no class"
            raise ValueError(f"system call {name} ({nr}): {where}")
        out.append(kinds[0])
    return out


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
