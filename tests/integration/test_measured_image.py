"""The built image is integrity-protected and measured: tampering is detected, never served."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import libos
from libos import Instance

pytestmark = pytest.mark.needs_root

OCCLUM = str(Path(sys.executable).parent / "occlum")


def occlum(inst: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OCCLUM, *args], cwd=inst, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "OCCLUM_LOG_LEVEL": "error"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    inst = Instance.new(tmp_path_factory.mktemp("measured") / "instance")
    inst.configure()
    libos.place_with_dependencies(
        inst.image, {"/bin/sh": Path("/bin/dash"), "/bin/cat": Path("/bin/cat")}
    )
    (inst.image / "etc" / "data.txt").write_bytes(b"measured data\n" * 1000)
    inst.build()
    yield inst


@pytest.fixture()
def copy(built: Instance, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(built.path, dest, symlinks=True)
    return dest


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def test_build_is_deterministic_and_printed(built: Instance) -> None:
    first = occlum(built.path, "print", "mrenclave").stdout.strip()
    again = occlum(built.path, "build")
    assert again.returncode == 0, again.stderr
    assert f"MRENCLAVE {first}" in again.stdout
    assert occlum(built.path, "print", "mrenclave").stdout.strip() == first
    assert len(occlum(built.path, "print", "mrsigner").stdout.strip()) == 64


def test_image_is_served_from_the_measured_file(built: Instance) -> None:
    res = built.run(["/bin/cat", "/etc/data.txt"])
    assert res.code == 0 and res.stdout == "measured data\n" * 1000


def test_a_flipped_data_byte_is_eio_never_data(copy: Path) -> None:
    image = copy / "build" / "image.img"
    data = image.read_bytes()
    at = data.index(b"measured data\n")
    _flip(image, at + 5000)
    res = occlum(copy, "run", "/bin/sh", "-c", "cat /etc/data.txt; echo status $?")
    assert res.returncode == 0, res.stderr
    assert "measured data" not in res.stdout
    assert "status 1" in res.stdout
    assert "Input/output error" in res.stderr
    assert "fails verification" in res.stderr  # the LibOS says what was wrong, once
    assert "Traceback" not in res.stderr


def test_tampered_metadata_stops_the_boot(copy: Path) -> None:
    image = copy / "build" / "image.img"
    _flip(image, image.stat().st_size - 10)
    res = occlum(copy, "run", "/bin/cat", "/etc/data.txt")
    assert res.returncode != 0
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "root image" in lines[0] and "measured root hash" in lines[0], (
        res.stderr
    )


def test_changed_configuration_or_hashes_break_the_measurement(copy: Path) -> None:
    cfg = copy / "build" / "Occlum.json.built"
    cfg.write_text(cfg.read_text().replace('"debuggable": true', '"debuggable": false'))
    res = occlum(copy, "run", "/bin/cat", "/etc/data.txt")
    assert res.returncode == 1 and "MRENCLAVE mismatch" in res.stderr and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1


def test_sign_key_sets_mrsigner(copy: Path) -> None:
    dev = occlum(copy, "print", "mrsigner").stdout.strip()
    key = copy / "release.pem"
    subprocess.run(
        ["openssl", "genrsa", "-3", "-out", str(key), "3072"], check=True, capture_output=True
    )
    res = occlum(copy, "build", "--sign-key", str(key))
    assert res.returncode == 0, res.stderr
    release = occlum(copy, "print", "mrsigner").stdout.strip()
    assert release != dev and len(release) == 64
    # the root's writable layer is sealed to the signer: a new signer cannot open the old one
    if (copy / "run" / "mount" / "__ROOT").exists():
        refused = occlum(copy, "run", "/bin/cat", "/etc/data.txt")
        assert refused.returncode == 1 and "wrong key" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        shutil.rmtree(copy / "run" / "mount")
    assert occlum(copy, "run", "/bin/cat", "/etc/data.txt").returncode == 0
    (copy / "bad.pem").write_text("not a key")
    bad = occlum(copy, "build", "--sign-key", str(copy / "bad.pem"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def _nested(path: Path) -> None:
    path.write_text("[" * 100_000)  # json recurses once per bracket: RecursionError


def _drop_initfs_hash(path: Path) -> None:
    hashes = json.loads(path.read_text())
    del hashes["initfs"]
    path.write_text(json.dumps(hashes))


def _alter_signature(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["signature"] = ("0" if doc["signature"][0] != "0" else "1") + doc["signature"][1:]
    path.write_text(json.dumps(doc))


def _flip_in_init(path: Path) -> None:
    _flip(path, path.read_bytes().index(b"\x7fELF") + 100)  # a data block of /bin/init


# Every file of build/ that `occlum run` reads is measured or is the signature: each one
# missing or damaged refuses the run, naming it (a missing initfs.img once booted without the
# init stage, exit 0).
_BROKEN_BUILDS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "initfs-missing": ("initfs.img", Path.unlink),
    "initfs-truncated": ("initfs.img", lambda p: os.truncate(p, p.stat().st_size // 2)),
    "initfs-empty": ("initfs.img", lambda p: os.truncate(p, 0)),
    "initfs-swapped": ("initfs.img", lambda p: shutil.copy(p.with_name("image.img"), p)),
    "initfs-a-directory": ("initfs.img", lambda p: (p.unlink(), p.mkdir())),
    "initfs-flipped": ("initfs.img", _flip_in_init),
    "initfs-hash-dropped": ("initfs", _drop_initfs_hash),
    "image-missing": ("image.img", Path.unlink),
    "image-swapped": ("image.img", lambda p: shutil.copy(p.with_name("initfs.img"), p)),
    "hashes-missing": ("image_hashes.json", Path.unlink),
    "hashes-nested": ("image_hashes.json", _nested),
    "config-missing": ("Occlum.json.built", Path.unlink),
    "config-nested": ("Occlum.json.built", _nested),
    "signature-missing": ("sigstruct.json", Path.unlink),
    "signature-nested": ("sigstruct.json", _nested),
    "signature-altered": ("sigstruct.json", _alter_signature),
    "staged-tree-missing": ("build/image", shutil.rmtree),
}


@pytest.mark.parametrize("case", sorted(_BROKEN_BUILDS))
def test_a_missing_or_damaged_build_file_refuses_the_run(copy: Path, case: str) -> None:
    named, damage = _BROKEN_BUILDS[case]
    target = {"initfs": "image_hashes.json", "build/image": "image"}.get(named, named)
    damage(copy / "build" / target)
    res = occlum(copy, "run", "/bin/cat", "/etc/data.txt")
    assert res.returncode != 0 and res.stdout == "", res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], res.stderr
