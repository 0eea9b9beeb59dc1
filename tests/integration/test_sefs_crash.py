"""Crash tests for SEFS: SIGKILL the whole LibOS at random moments of a write workload.

``sefs_writer write /data BASE`` writes files f<N> with deterministic contents, fsyncs each and
says so, renames and unlinks older ones (fsyncing the directory) and says so too; it prints
``start <step>`` before each step.  Each trial kills ``occlum run`` (the supervisor) with
SIGKILL at a random moment, then ``sefs_writer check /data`` runs in the next ``occlum run``:

- the volume always mounts (exit 0, nothing on stderr);
- every file on the volume has its exact, complete contents (never torn, zero-filled, stale),
  but the one being written when the kill came, which is not fsync'd yet (docs/internals.md,
  "What a kill keeps": the last commit may have caught it created and partly written);
- the names on the volume are exactly those the printed log says, except that the one step
  that had started but not reported may or may not have happened (atomically).

Some trials start from a fresh volume and kill during boot, so the kill lands in the format of
the volume, its first commit or the first fsync; others kill during the mount of an existing
volume.  Set SEFS_CRASH_SEED to replay a run; SEFS_CRASH_TRIALS to change the trial count.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = [pytest.mark.slow, pytest.mark.needs_root]

DIAG = Path(__file__).resolve().parent.parent / "c" / "diag"
TRIALS = int(os.environ.get("SEFS_CRASH_TRIALS", "50"))
ENV = {**os.environ, "OCCLUM_LOG_LEVEL": "error"}

Names = dict[str, int]  # file name on /data -> the N whose content it must hold
Step = tuple[str, ...]


@pytest.fixture()
def inst(tmp_path: Path) -> Instance:
    i = Instance.new(tmp_path / "instance")
    i.configure()
    cfg = i.config()
    mounts = cfg["mount"]
    assert isinstance(mounts, list)
    mounts.append({"target": "/data", "type": "sefs", "source": "./run/mount/data"})
    i.write_config(cfg)
    (i.image / "data").mkdir()
    writer = libos.compile_c(DIAG / "sefs_writer.c", tmp_path / "sefs_writer")
    libos.place_with_dependencies(i.image, {"/bin/sefs_writer": writer})
    i.build()
    return i


def _replay(lines: list[str], names: Names) -> Step | None:
    """Apply the completed steps of a writer's log to ``names``; the started one is returned."""
    pending: Step | None = None
    for line in lines:
        word, *args = line.split()
        if word == "start":
            pending = tuple(args)
        elif word == "synced":
            names[f"f{args[0]}"] = int(args[0])
            pending = None
        elif word == "renamed":
            names[args[1]] = names.pop(args[0])
            pending = None
        elif word == "unlinked":
            del names[args[0]]
            pending = None
        else:
            raise AssertionError(f"unexpected writer output {line!r}")
    return pending


def _after(step: Step | None, names: Names) -> Names:
    out = dict(names)
    if step is None:
        return out
    if step[0] == "write":
        out[step[1]] = int(step[1][1:])
    elif step[0] == "rename":
        out[step[2]] = out.pop(step[1])
    elif step[0] == "unlink":
        out.pop(step[1])
    return out


def _kill_at(proc: subprocess.Popen[bytes], when: float) -> None:
    time.sleep(max(0.0, when - time.monotonic()))
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)  # the supervisor only: its programs must die with it


def _trial(inst: Instance, rng: random.Random, trial: int) -> tuple[list[str], str]:
    """Run the writer, kill the LibOS; the writer's stdout lines and a description."""
    base = 1000 * (trial + 1)
    proc = subprocess.Popen(
        [*libos._tool("occlum"), "run", "/bin/sefs_writer", "write", "/data", str(base)],
        cwd=inst.path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=ENV, start_new_session=True,
    )  # fmt: skip
    started = time.monotonic()
    assert proc.stdout is not None and proc.stderr is not None
    err_chunks: list[bytes] = []
    stderr = proc.stderr
    err_reader = threading.Thread(target=lambda: err_chunks.append(stderr.read()))
    err_reader.start()
    killer = None
    try:
        if trial % 5 in (0, 1):  # during boot: the mount (a format, if fresh) or first commit
            delay = rng.uniform(0.0, 0.6)
            how = f"killed {delay * 1000:.0f} ms after occlum run started"
            killer = threading.Thread(target=_kill_at, args=(proc, started + delay))
            killer.start()
            lines = [ln.decode() for ln in proc.stdout]
        else:  # during the workload
            first = proc.stdout.readline()
            delay = rng.uniform(0.0, 0.3)
            how = f"killed {delay * 1000:.0f} ms after the writer's first line"
            if not first:
                proc.wait(timeout=30)
                err_reader.join(timeout=30)
                raise AssertionError(
                    f"writer ended before the kill, exit {proc.returncode}:\n"
                    + b"".join(err_chunks).decode(errors="replace")
                )
            _kill_at(proc, time.monotonic() + delay)
            lines = [first.decode()] + [ln.decode() for ln in proc.stdout]
        proc.wait(timeout=30)  # EOF above: every process holding the pipe is gone
        err_reader.join(timeout=30)
    finally:
        if killer is not None:
            killer.join()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    if proc.returncode != -signal.SIGKILL:
        err = b"".join(err_chunks).decode(errors="replace")
        raise AssertionError(
            f"occlum run ended by itself ({proc.returncode}) before the kill:\n{err}"
        )
    # the last line may be cut short by the kill only if the writer died mid-printf; it
    # flushes whole lines, so a partial line is a finding as well
    return [ln.rstrip("\n") for ln in lines], how


def _check(inst: Instance, where: str) -> dict[str, tuple[int, str]]:
    res = inst.run(["/bin/sefs_writer", "check", "/data"], timeout=60)
    assert res.code == 0 and not res.stderr.strip(), (
        f"the volume did not mount cleanly; {where}\n{res.describe()}"
    )
    seen: dict[str, tuple[int, str]] = {}
    for line in res.stdout.splitlines():
        name, size, verdict = line.split(maxsplit=2)
        seen[name] = (int(size), verdict)
    return seen


def test_sigkill_during_writes_loses_nothing_synced(inst: Instance) -> None:
    seed = int(os.environ.get("SEFS_CRASH_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    storage = inst.path / "run" / "mount" / "data"
    names: Names = {}
    # files left incomplete by the kill that interrupted their writing: the writer never
    # touches them again, so they stay as the trial's check saw them
    incomplete: set[str] = set()
    began = time.monotonic()
    stats = {"steps": 0, "pending_done": 0, "pending_not_done": 0, "no_step": 0}
    for trial in range(TRIALS):
        if trial % 5 == 0:  # a fresh volume: the kill may land in its format or first commit
            shutil.rmtree(storage, ignore_errors=True)
            names = {}
            incomplete = set()
        lines, how = _trial(inst, rng, trial)
        pending = _replay(lines, names)
        where = f"seed {seed}, trial {trial} ({how}); log tail {lines[-4:]}"
        seen = _check(inst, where)
        # a file being written when the LibOS was killed, not yet fsync'd, may hold what it
        # held at the last commit (a periodic or last-close one): absent, empty or partly
        # written, as on ext4 after a power cut; every other file must be exact
        in_flight = pending[1] if pending is not None and pending[0] == "write" else None
        bad = {
            n: v for n, v in seen.items() if v[1] != "ok" and n != in_flight and n not in incomplete
        }
        assert not bad, f"files with wrong contents {bad}; {where}"
        if in_flight is not None and seen.get(in_flight, (0, "ok"))[1] != "ok":
            incomplete.add(in_flight)
        without, with_ = set(names), set(_after(pending, names))
        if set(seen) == with_:
            names = _after(pending, names)
            stats["pending_done" if pending else "no_step"] += 1
        elif set(seen) == without:
            stats["pending_not_done"] += 1
        else:
            raise AssertionError(
                f"names on the volume differ from the log: missing {sorted(without - set(seen))}, "
                f"unexpected {sorted(set(seen) - with_)} (started step {pending}); {where}"
            )
        stats["steps"] += sum(1 for ln in lines if not ln.startswith("start"))
    elapsed = time.monotonic() - began
    print(f"seed {seed}: {TRIALS} trials in {elapsed:.1f} s, {json.dumps(stats)}")
    assert stats["steps"] > TRIALS, f"too few completed steps to mean much: {stats}"
