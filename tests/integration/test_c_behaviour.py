"""Every C behaviour test runs natively and inside the LibOS; outputs and exit codes must match.

Natively the scratch directory is a fresh pytest tmp dir; inside the LibOS it is /tmp/<name>
(a ramfs). The programs print nothing that differs between the two (see tests/c/common.h).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import libos
from libos import LIBOS_SCRATCH, CBuild, Instance, behaviour_cases, inside_name

pytestmark = pytest.mark.needs_root

CASES = behaviour_cases()

# Tests that pass on Linux but not yet inside the LibOS (every variant), with the cause in the
# LibOS. The native run must still pass, and the LibOS run still happens: once the native run
# passed, the test marks itself xfail with strict=True and raises=LibOSDiffers, so
#  - a native failure, or a Python traceback from the LibOS, is still an ordinary failure;
#  - the LibOS output differing from native is the expected failure (XFAIL);
#  - the LibOS output matching native is XPASS(strict), a failure: whoever fixes the cause sees
#    it and removes the entry here. (An imperative pytest.xfail() before the LibOS run would
#    never notice the fix.)
KNOWN_LIBOS_FAILURES: dict[str, str] = {
    "unix_sendmsg": (
        "sendmsg runs natively (its msg_name is inside the message header, where the filter "
        "cannot look, and the launcher hands the listener over with a sendmsg made under the "
        "filter): the kernel finds a path socket only at the text it was bound with"
    ),
    "epoll_opath": (
        "epoll_ctl is native and an O_PATH descriptor inside is a host memfd opened without "
        "access (SECCOMP_ADDFD cannot install a real O_PATH descriptor): the kernel says EPERM "
        "(not pollable), EINVAL as the epoll descriptor, where Linux says EBADF"
    ),
}
# A known failure may hang; it need not cost the full run timeout.
KNOWN_FAILURE_TIMEOUT = 30.0


class LibOSDiffers(AssertionError):
    """The program behaved differently inside the LibOS than natively."""


@pytest.mark.parametrize(("name", "variant"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_native_then_libos(
    name: str,
    variant: str,
    c_build: CBuild,
    c_instance: Instance,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    prog = inside_name(name, variant)
    native = libos.run_native([str(c_build.host(prog)), str(tmp_path / name)])
    # The test must pass on Linux first: a failing native run is a bug in the test.
    assert native.code == 0, f"native run of {prog} failed:\n{native.describe()}"
    assert native.stdout.rstrip().endswith("PASS")

    known = KNOWN_LIBOS_FAILURES.get(name)
    timeout = libos.RUN_TIMEOUT
    if known is not None:
        request.applymarker(pytest.mark.xfail(reason=known, raises=LibOSDiffers, strict=True))
        timeout = min(timeout, KNOWN_FAILURE_TIMEOUT)
    inside = c_instance.run([prog, f"{LIBOS_SCRATCH}/{name}-{variant}"], timeout=timeout)
    assert "Traceback" not in inside.stderr, inside.describe()
    if inside.stdout != native.stdout:
        raise LibOSDiffers(
            f"{prog}: output inside the LibOS differs from native\n"
            f"--- native ---\n{native.stdout}\n--- libos ---\n{inside.describe()}"
        )
    if inside.code != native.code:
        raise LibOSDiffers(f"{prog}: exit status {inside.code}, natively {native.code}")


def test_every_c_file_is_covered() -> None:
    names = {n for n, _ in CASES}
    assert names == set(libos.c_tests())
    assert len(names) >= 29
    # a known failure names an existing test
    assert set(KNOWN_LIBOS_FAILURES) <= names
