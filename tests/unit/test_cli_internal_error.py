"""A bug of the command or the LibOS reaches the user as one line, not a traceback (the
traceback only at OCCLUM_LOG_LEVEL=debug), from the console script and from a zygote's run."""

from __future__ import annotations

import sys

import pytest

from occlum.cli import entry, fastrun, zygote


def _boom(*_args: object) -> None:
    raise ValueError("filedescriptor out of range in select()")


def test_the_console_script_says_a_bug_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OCCLUM_LOG_LEVEL", raising=False)
    monkeypatch.setattr(entry, "_main", _boom)
    with pytest.raises(SystemExit) as exc:
        entry.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        "occlum: error: internal error: ValueError: filedescriptor out of range in select() "
        "(OCCLUM_LOG_LEVEL=debug prints where)\n"
    )


def test_a_zygote_run_says_a_bug_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OCCLUM_LOG_LEVEL", raising=False)
    monkeypatch.setattr(fastrun, "plain_run", _boom)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the run sets the command line
    assert zygote._run_command([b"run", b"/bin/true"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("occlum: error: internal error: ValueError:"), err


def test_the_traceback_at_debug_level(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OCCLUM_LOG_LEVEL", "debug")
    monkeypatch.setattr(entry, "_main", _boom)
    with pytest.raises(SystemExit):
        entry.main()
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith(
        "occlum: error: internal error: ValueError: filedescriptor out of range in select()\n"
    )
