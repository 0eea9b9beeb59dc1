"""Crash tests for SEFS under sqlite: SIGKILL the whole LibOS, reopen, check sqlite's promise.

An unmodified ``sqlite3`` (the host's CLI) runs transactions on a database on a SEFS volume:
transaction ``k`` inserts row ``k`` (a random blob of 100 B .. 6 KiB, so some rows spill into
overflow pages), rewrites the blob of row ``k // 2`` and sets the counter row to ``k``; after
``COMMIT`` returns it prints ``ack|k`` (the CLI flushes every line it prints).  Each trial is
one ``occlum run`` of it, killed (SIGKILL to the supervisor; its programs die with it) either
at a chosen durable step of a SEFS commit (the ``step`` hooks of :mod:`occlum.fs.sefs.store`,
reached through a launcher that wraps them) or at a random moment.  Each run first reopens the
database and reports on it, which checks the kill before:

- the volume mounts and sqlite opens the database (a hot journal is rolled back then);
- ``PRAGMA integrity_check`` says ``ok``;
- the database holds exactly transactions ``1 .. n``, each whole (rows ``1 .. n``, counter
  ``n``): nothing torn, nothing half-applied;
- ``n`` is at least the last acknowledged transaction and at most one more (the transaction
  in flight at the kill may or may not have committed).

That is the promise of docs/internals.md ("What a kill keeps"): a kill of the LibOS keeps what
a power cut keeps on ext4 with ``data=ordered``.  sqlite's own contract decides what that
means per mode: with ``synchronous=FULL`` a ``TRUNCATE`` or ``WAL`` commit ends with an fsync,
so every acknowledged transaction survives; a ``DELETE`` commit ends with the unlink of the
journal and *no* fsync of the directory (sqlite does that only with ``synchronous=EXTRA``,
"additional durability if the commit is followed closely by a power loss"), so there the last
acknowledged transaction may be rolled back by its still-present journal, never an earlier one
(the next transaction's first fsync makes the unlink durable).  ``DELETE`` with ``EXTRA`` must
lose nothing.

The launcher also lowers the journal size that makes a commit a checkpoint (16 MiB) to
:data:`JOURNAL_MAX`, so that checkpoints, and kills at each of their steps, come every few
transactions rather than every few hundred.

``SEFS_SQLITE_SEED`` replays a run; ``SEFS_SQLITE_TRIALS`` sets the kills per mode of the big
run (slow-marked); a quick variant makes a few kills per mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = [pytest.mark.needs_root]

ENV = {**os.environ, "OCCLUM_LOG_LEVEL": "error"}
TRIALS = int(os.environ.get("SEFS_SQLITE_TRIALS", "52"))
FRESH_EVERY = 13  # kills on one volume before it is made afresh
JOURNAL_MAX = 2 * 1024 * 1024
# The durable steps of a commit (store.py, journal.py): extent objects, the journal append,
# and a checkpoint's metadata object, superblock write, rename, directory fsync and removals.
STEPS = (
    "object",
    "journal-appended",
    "superblock-written",
    "superblock-renamed",
    "superblock-synced",
    "removed",
)
DB = "/data/db"

# `occlum run`, with the journal size of a checkpoint lowered to SEFS_JOURNAL_MAX, and every
# durable commit step of the /data volume counted: at the step named by SEFS_KILL_AT
# ("<step>#<n>": its n-th occurrence) the supervisor SIGKILLs itself, after writing the step
# to SEFS_KILL_LOG so that the test knows where the kill landed.
_LAUNCHER = """
import os, signal, sys
from occlum.fs.sefs import store, volume

volume.JOURNAL_MAX = int(os.environ["SEFS_JOURNAL_MAX"])
name, _, nth = os.environ.get("SEFS_KILL_AT", "").rpartition("#")
log, pid, seen = os.environ["SEFS_KILL_LOG"], os.getpid(), [0]
real = store.ObjectStore._step

def step(self, what):
    real(self, what)
    if os.getpid() != pid or self.root.name != "data" or what != name:
        return
    seen[0] += 1
    if seen[0] == int(nth):
        with open(log, "w") as f:
            f.write(what)
        os.kill(pid, signal.SIGKILL)

store.ObjectStore._step = step
from occlum.cli.main import main
sys.exit(main())
"""


@dataclass(frozen=True, slots=True)
class Mode:
    journal: str
    synchronous: str
    may_lose_last: bool  # sqlite makes its commit durable only at the next fsync

    @property
    def name(self) -> str:
        return f"{self.journal}/{self.synchronous}"


MODES = {
    "delete": Mode("DELETE", "FULL", may_lose_last=True),
    "delete-extra": Mode("DELETE", "EXTRA", may_lose_last=False),
    "truncate": Mode("TRUNCATE", "FULL", may_lose_last=False),
    "wal": Mode("WAL", "FULL", may_lose_last=False),
}


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    i = Instance.new(tmp_path_factory.mktemp("sqlite-crash") / "instance")
    i.configure()
    cfg = i.config()
    mounts = cfg["mount"]
    assert isinstance(mounts, list)
    mounts.append({"target": "/data", "type": "sefs", "source": "./run/mount/data"})
    i.write_config(cfg)
    (i.image / "data").mkdir()
    libos.place_with_dependencies(i.image, {"/bin/sqlite3": Path("/usr/bin/sqlite3")})
    i.build()
    return i


def _script(mode: Mode, rng: random.Random, transactions: int) -> bytes:
    """Report on the database, then run transactions, each acknowledged once committed.

    ``.bail on``: a failed statement ends the program, so no acknowledgement follows a COMMIT
    that failed (once the supervisor is gone, a call it would serve fails with ENOSYS until
    the tree's init kills the programs: a few milliseconds in which sqlite would go on)."""
    lines = [
        ".bail on\n",
        f"PRAGMA journal_mode={mode.journal};\nPRAGMA synchronous={mode.synchronous};\n",
        "PRAGMA integrity_check;\nSELECT 'counter', n FROM c;\n",
        "SELECT 'rows', count(*), coalesce(min(k), 0), coalesce(max(k), 0) FROM t;\n",
        ".print ready\n",
    ]
    for _ in range(transactions):
        row, rewrite = rng.randrange(100, 6000), rng.randrange(100, 3000)
        lines.append(
            f"BEGIN; INSERT INTO t SELECT n + 1, randomblob({row}) FROM c; "
            f"UPDATE t SET v = randomblob({rewrite}) WHERE k = (SELECT (n + 1) / 2 FROM c); "
            "UPDATE c SET n = n + 1; COMMIT;\nSELECT 'ack', n FROM c;\n"
        )
    return "".join(lines).encode()


def _fresh_volume(inst: Instance, mode: Mode) -> None:
    shutil.rmtree(inst.path / "run" / "mount" / "data", ignore_errors=True)
    sql = (
        f"PRAGMA journal_mode={mode.journal};\n"
        "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);\n"
        "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER);\n"
        "INSERT INTO c VALUES(1, 0);\n"
    )
    res = inst.run(["/bin/sqlite3", DB], stdin=sql, timeout=60)
    assert res.code == 0 and not res.stderr.strip(), res.describe()


def _kill_at(proc: subprocess.Popen[bytes], when: float) -> None:
    time.sleep(max(0.0, when - time.monotonic()))
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)


@dataclass(slots=True)
class Run:
    lines: list[str]
    how: str
    step: str | None  # the commit step the kill landed on, if it was a step kill
    code: int


def _run(inst: Instance, script: bytes, kill: str | None, rng: random.Random) -> Run:
    """One `occlum run` of sqlite with ``script`` on its stdin: killed at the step ``kill``
    ("<step>#<n>"), or for "random" at a random moment after it said "ready", or not at all
    (None: the script ends, and so does the run)."""
    log = inst.path / "kill-step"
    log.unlink(missing_ok=True)
    env = {**ENV, "SEFS_JOURNAL_MAX": str(JOURNAL_MAX), "SEFS_KILL_LOG": str(log)}
    if kill is not None and kill != "random":
        env["SEFS_KILL_AT"] = kill
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, "run", "/bin/sqlite3", DB],
        cwd=inst.path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, start_new_session=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    err: list[bytes] = []

    def feed() -> None:
        with contextlib.suppress(OSError):  # the kill closes the pipe under us
            stdin.write(script)
        with contextlib.suppress(OSError):
            stdin.close()

    threads = [
        threading.Thread(target=feed),
        threading.Thread(target=lambda: err.append(stderr.read())),
    ]
    for th in threads:
        th.start()
    killer = None
    lines: list[str] = []
    how = f"killed at {kill}" if kill else "not killed"
    try:
        if kill == "random":
            while (line := stdout.readline().decode()) and line != "ready\n":
                lines.append(line)
            if line:
                lines.append(line)
                delay = rng.uniform(0.0, 0.8)
                how = f"killed {delay * 1000:.0f} ms after 'ready'"
                killer = threading.Thread(target=_kill_at, args=(proc, time.monotonic() + delay))
                killer.start()
        lines += [ln.decode() for ln in stdout]
        proc.wait(timeout=120)
    finally:
        if killer is not None:
            killer.join()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for th in threads:
            th.join(timeout=30)
        stdout.close()
        stderr.close()
    stderr_text = b"".join(err).decode(errors="replace")
    if kill is None:
        assert proc.returncode == 0 and not stderr_text.strip(), (
            f"sqlite ended with {proc.returncode}:\n{stderr_text}"
        )
    elif proc.returncode != -signal.SIGKILL:
        raise AssertionError(
            f"occlum run ended by itself ({proc.returncode}) before the kill ({how}):\n"
            + stderr_text
        )
    step = log.read_text() if log.exists() else None
    if kill not in (None, "random") and step is None:
        raise AssertionError(f"the LibOS was killed, but not at {kill}")
    return Run([ln.rstrip("\n") for ln in lines], how, step, proc.returncode)


def _report(run: Run, where: str) -> int | None:
    """The counter the run's report found, after checking the report; None if the run was
    killed before it finished reporting (its recovery then counts as the kill's)."""
    out = run.lines[1:]  # after the journal mode
    if "ready" not in out:
        return None
    assert out[0] == "ok", f"integrity_check: {out[: out.index('ready')]}; {where}"
    counter = re.fullmatch(r"counter\|(\d+)", out[1])
    rows = re.fullmatch(r"rows\|(\d+)\|(\d+)\|(\d+)", out[2])
    assert counter and rows, f"unexpected report {out[:4]}; {where}"
    n = int(counter[1])
    assert (int(rows[1]), int(rows[2]), int(rows[3])) == (n, min(n, 1), n), (
        f"the database holds rows {rows[2]}..{rows[3]} ({rows[1]} rows) but its counter says "
        f"{n}: a transaction was applied in part; {where}"
    )
    return n


def _acks(run: Run, first: int, where: str) -> list[int]:
    acks = [int(ln.split("|")[1]) for ln in run.lines if ln.startswith("ack|")]
    assert acks == list(range(first, first + len(acks))), f"acknowledged {acks}; {where}"
    return acks


def _run_mode(inst: Instance, mode_key: str, plan: list[str], seed: int) -> Counter[str]:
    """Kill sqlite's runs as ``plan`` says, checking each kill in the report of the run after
    (a volume is made afresh every :data:`FRESH_EVERY` kills, after a run that is not killed)."""
    mode = MODES[mode_key]
    rng = random.Random(f"{seed}-{mode_key}")
    stats: Counter[str] = Counter()
    for part in range(0, len(plan), FRESH_EVERY):
        _fresh_volume(inst, mode)
        low = last = high = 0  # the next report may find transactions low..high
        last_kill = "the fresh volume"
        for trial, kill in enumerate([*plan[part : part + FRESH_EVERY], None], start=part):
            run = _run(inst, _script(mode, rng, 0 if kill is None else 20000), kill, rng)
            where = f"mode {mode.name}, seed {seed}, trial {trial}"
            n = _report(run, f"{where}, checking {last_kill}")
            if n is None:  # killed while reopening: nothing new was started
                stats["killed while reopening"] += 1
            else:
                assert low <= n <= high, (
                    f"the database holds transactions 1..{n}, but sqlite {mode.name} promises "
                    f"{low}..{high} after {last_kill}; {where}"
                )
                if n < last:
                    stats["last acknowledged rolled back"] += 1
                elif n > last:
                    stats["in flight committed"] += 1
                acks = _acks(run, n + 1, where)
                stats["acknowledged"] += len(acks)
                last = acks[-1] if acks else n
                low = last - 1 if mode.may_lose_last and acks else last
                high = last + 1
            if kill is not None:
                stats["kills"] += 1
                stats[f"at {run.step}" if run.step else "at random"] += 1
                tail = [ln for ln in run.lines if ln.startswith("ack|")][-2:]
                last_kill = f"trial {trial} ({run.how}, acknowledged ..{tail})"
    return stats


def _plan(trials: int, rng: random.Random) -> list[str]:
    """Which kills a run makes: two thirds at commit steps (each step in turn, at its first,
    second or third occurrence in the run; the journal appends and objects, which come far
    more often, anywhere among the first 40), the rest at random moments."""
    plan: list[str] = []
    nth = 0
    while len(plan) < trials * 2 // 3:
        for step in STEPS:
            often = step in ("object", "journal-appended")
            plan.append(f"{step}#{rng.randrange(1, 40) if often else 1 + nth % 3}")
        nth += 1
    plan = plan[: trials * 2 // 3]
    plan += ["random"] * (trials - len(plan))
    rng.shuffle(plan)
    return plan


def _summary(stats: dict[str, Counter[str]], seed: int, began: float) -> str:
    total = sum(s["kills"] for s in stats.values())
    summary = json.dumps({k: dict(sorted(v.items())) for k, v in stats.items()})
    return f"seed {seed}: {total} kills in {time.monotonic() - began:.0f} s: {summary}"


def _seed() -> int:
    return int(os.environ.get("SEFS_SQLITE_SEED", str(time.time_ns() % 1_000_000)))


@pytest.mark.parametrize("mode_key", list(MODES))
def test_sqlite_keeps_what_it_acknowledged_across_kills(inst: Instance, mode_key: str) -> None:
    seed = _seed()
    began = time.monotonic()
    plan = ["journal-appended#5", "superblock-renamed#2", "random"]
    stats = _run_mode(inst, mode_key, plan, seed)
    print(_summary({mode_key: stats}, seed, began))
    assert stats["kills"] == len(plan)


@pytest.mark.slow
def test_sqlite_across_kills_at_every_commit_step_and_at_random(inst: Instance) -> None:
    seed = _seed()
    rng = random.Random(seed)
    began = time.monotonic()
    stats = {key: _run_mode(inst, key, _plan(TRIALS, rng), seed) for key in MODES}
    print(_summary(stats, seed, began))
    assert sum(s["kills"] for s in stats.values()) == len(MODES) * TRIALS
    for key, s in stats.items():
        missing = [step for step in STEPS if not s[f"at {step}"]]
        assert not missing or 2 * len(STEPS) > TRIALS, f"{key}: no kill at {missing}: {s}"
        assert s["acknowledged"] > s["kills"], f"{key}: too few transactions to mean much: {s}"
