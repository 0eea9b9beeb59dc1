"""The root: a writable encrypted SEFS layer (run/mount/__ROOT) over the measured image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")
MARK = "UNION-ROOT-PLAINTEXT-41c9"


def occlum(inst: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OCCLUM, *args], cwd=inst, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip


def _instance(tmp_path: Path, policy: int | None = None) -> Path:
    inst = Instance.new(tmp_path / "instance")
    inst.configure()
    if policy is not None:
        cfg = json.loads(inst.config_path.read_text())
        root = next(m for m in cfg["mount"] if m["target"] == "/")
        writable = next(
            la for la in root["options"]["layers"] if "MAC" not in la.get("options", {})
        )
        writable.setdefault("options", {})["autokey_policy"] = policy
        inst.config_path.write_text(json.dumps(cfg))
    tools = {f"/bin/{n}": Path(f"/bin/{n}") for n in ("cat", "ls", "rm", "mkdir", "mv")}
    libos.place_with_dependencies(inst.image, {"/bin/sh": Path("/bin/dash"), **tools})
    (inst.image / "etc" / "motd").write_text("from the image\n")
    inst.build()
    return inst.path


def test_writes_persist_encrypted_and_deletions_stick(tmp_path: Path) -> None:
    inst = _instance(tmp_path)
    script = (
        f"mkdir -p /root/work && echo {MARK} > /root/work/{MARK} && rm /etc/motd && "
        "mv /bin/mv /bin/mv2 && ls /etc"
    )
    res = occlum(inst, "run", "/bin/sh", "-c", script)
    assert res.returncode == 0, res.stderr
    assert "motd" not in res.stdout
    res = occlum(inst, "run", "/bin/sh", "-c", f"cat /root/work/{MARK}; ls /etc; ls /bin")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == MARK and "motd" not in lines and "mv2" in lines and "mv" not in lines
    stored = b"".join(p.read_bytes() for p in (inst / "run").rglob("*") if p.is_file())
    assert MARK.encode() not in stored
    assert (inst / "build" / "image").joinpath("etc", "motd").exists()  # the image is untouched


def test_mrenclave_policy_binds_the_root_to_the_build(tmp_path: Path) -> None:
    inst = _instance(tmp_path, policy=0)
    assert occlum(inst, "run", "/bin/sh", "-c", "echo kept > /root/f").returncode == 0
    assert occlum(inst, "run", "/bin/cat", "/root/f").stdout == "kept\n"
    (inst / "image" / "etc" / "motd").write_text("from the image, one byte more\n")
    assert occlum(inst, "build").returncode == 0
    res = occlum(inst, "run", "/bin/cat", "/root/f")
    assert res.returncode == 1 and res.stdout == ""
    assert "wrong key" in res.stderr and len(res.stderr.strip().splitlines()) == 1
