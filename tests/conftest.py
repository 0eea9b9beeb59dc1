"""Shared fixtures. The LibOS fixtures are session-scoped and lazy: the C tests are compiled
and one instance is built once per session, and only when a test asks for it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

import libos
from libos import (
    C_DIR,
    SECURITY_DIR,
    VARIANTS,
    CBuild,
    HostShare,
    Instance,
    behaviour_cases,
    inside_name,
)

# The machines are shared and loaded: a property test's example may take seconds, which says
# nothing about the property. Timing lives in bench/. Two profiles: "ci" (the default, what
# scripts/test.sh runs: every property test's full example count) and "dev" (scripts/quick.sh,
# HYPOTHESIS_PROFILE=dev: an eighth of it, for the quick loop); tests name their counts with
# libos.examples(N), which the profile scales.
for _name in ("ci", "dev"):
    settings.register_profile(_name, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def c_build(tmp_path_factory: pytest.TempPathFactory) -> CBuild:
    root = tmp_path_factory.mktemp("cbuild")
    build = CBuild(root)
    for name, variant in behaviour_cases():
        inside = inside_name(name, variant)
        out = root / inside.lstrip("/")
        build.binaries[inside] = libos.compile_c(C_DIR / f"{name}.c", out, VARIANTS[variant])
    for name in libos.security_tests():
        inside = f"/bin/sec-{name}"
        out = root / inside.lstrip("/")
        build.binaries[inside] = libos.compile_c(SECURITY_DIR / f"{name}.c", out)
    return build


@pytest.fixture(scope="session")
def host_share(tmp_path_factory: pytest.TempPathFactory) -> HostShare:
    base = tmp_path_factory.mktemp("hostside")
    share = base / "share"
    (share / "sub").mkdir(parents=True)
    (share / "hello.txt").write_text("hello from the host\n")
    secret = base / "secret.txt"
    secret.write_text(f"HOST-SECRET {os.getpid()}\n")
    (share / "link_abs").symlink_to(secret)
    (share / "link_rel").symlink_to("../secret.txt")
    (share / "link_root").symlink_to("/")
    return HostShare(share, secret)


@pytest.fixture(scope="session")
def c_instance(
    c_build: CBuild, host_share: HostShare, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instance]:
    """One built instance holding every C behaviour and security test, for the whole session."""
    inst = Instance.new(tmp_path_factory.mktemp("cinst") / "instance")
    inst.configure(hostfs=host_share.share)
    libos.place_with_dependencies(inst.image, c_build.binaries)
    inst.build()
    yield inst
    shutil.rmtree(inst.path, ignore_errors=True)
