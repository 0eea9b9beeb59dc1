"""argv[0] of a program `occlum run` or `occlum exec` starts."""

from __future__ import annotations

from occlum.platform.spawner import program_name


def test_file_name_when_path_finds_it() -> None:
    assert program_name(b"/bin/cat", [b"HOME=/", b"PATH=/usr/bin:/bin"]) == b"cat"
    assert program_name(b"/usr/bin/cat", [b"PATH=/usr/bin/"]) == b"cat"
    assert program_name(b"/init", [b"PATH=/"]) == b"init"


def test_the_path_when_path_does_not() -> None:
    assert program_name(b"/usr/bin/python3", [b"OCCLUM=yes"]) == b"/usr/bin/python3"
    assert program_name(b"/usr/bin/python3", [b"PATH=/bin"]) == b"/usr/bin/python3"
    assert program_name(b"/opt/app/run", [b"PATH="]) == b"/opt/app/run"
