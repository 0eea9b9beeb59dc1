"""``occlum build --image-key`` and ``--buildin-image-key``: an encrypted, measured root image."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from occlum.cli.main import cli
from occlum.enclave.build_seal import read_sigstruct, verify_build
from occlum.enclave.keys import load_image_key
from occlum.errors import UserError
from occlum.fs.imagefs import ImageFs, ImageKeyError, image_is_encrypted
from occlum.vfs.mount import MountTable
from occlum.vfs.open import open_path
from occlum.vfs.path import PathOp

SECRET = b"SECRET-APPLICATION-DATA-MARKER\n"
SECRET_NAME = "secret_config_name_marker"


def occlum(inst: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--instance-dir", str(inst), *args], catch_exceptions=False)


def read(fs: ImageFs, path: bytes) -> bytes:
    r = MountTable(fs).root()
    o = open_path(PathOp(r, r, path), os.O_RDONLY)
    assert o.host_fd is not None
    try:
        return os.read(o.host_fd, 1 << 20)
    finally:
        os.close(o.host_fd)


def hashes(inst: Path) -> dict[str, str]:
    out: dict[str, str] = json.loads((inst / "build/image_hashes.json").read_text())
    return out


def build_files(inst: Path) -> dict[str, bytes]:
    b = inst / "build"
    return {p.name: p.read_bytes() for p in b.iterdir() if p.is_file()}


def still_verifies(inst: Path) -> None:
    config = (inst / "build/Occlum.json.built").read_bytes()
    verify_build(inst / "build", config, hashes(inst))


@pytest.fixture
def inst(tmp_path: Path) -> Path:
    r = CliRunner().invoke(cli, ["--instance-dir", str(tmp_path), "new", "app"])
    assert r.exit_code == 0, r.output
    app = tmp_path / "app"
    (app / "image/etc" / SECRET_NAME).write_bytes(SECRET * 100)
    (app / "image/bin/tool").write_bytes(os.urandom(50_000))
    assert occlum(app, "gen-image-key", "image_key").exit_code == 0
    return app


def test_build_with_image_key_and_buildin_key(inst: Path) -> None:
    r = occlum(inst, "build", "--image-key", "image_key", "--buildin-image-key")
    assert r.exit_code == 0, r.output
    assert "Root image: encrypted" in r.output
    key = load_image_key(inst / "image_key")
    h = hashes(inst)
    assert h["image_type"] == "encrypted"
    # the root image is encrypted: no name or content of image/ in it, readable with the key
    img = inst / "build/image.img"
    assert image_is_encrypted(img)
    raw = img.read_bytes()
    assert SECRET not in raw and SECRET_NAME.encode() not in raw and b"localhost" not in raw
    with pytest.raises(ImageKeyError, match="encrypted"):
        ImageFs(img, h["image"])
    fs = ImageFs(img, h["image"], key)
    try:
        assert read(fs, b"/etc/" + SECRET_NAME.encode()) == SECRET * 100
        assert read(fs, b"/bin/tool") == (inst / "image/bin/tool").read_bytes()
    finally:
        fs.close()
    # the initfs image is integrity-only and holds the key file, which initfs/ does not
    initfs = inst / "build/initfs.img"
    assert not image_is_encrypted(initfs)
    fs = ImageFs(initfs, h["initfs"])
    try:
        assert read(fs, b"/etc/image_key") == (inst / "image_key").read_bytes()
        assert fs.root.lookup(b"etc").lookup(b"image_key").getattr().mode == 0o100600
    finally:
        fs.close()
    assert not (inst / "initfs/etc/image_key").exists()
    # MRENCLAVE covers the image type: the build verifies, and not with the type changed
    still_verifies(inst)
    config = (inst / "build/Occlum.json.built").read_bytes()
    with pytest.raises(UserError, match=r"image type \(encrypted or not\) changed"):
        verify_build(inst / "build", config, {**h, "image_type": "integrity-only"})
    assert read_sigstruct(inst / "build").measured.image_root_hashes["image_type"] == "encrypted"


def test_encrypted_builds_are_deterministic_and_distinct(inst: Path) -> None:
    def mrenclave(*args: str) -> str:
        r = occlum(inst, "build", *args)
        assert r.exit_code == 0, r.output
        line = next(x for x in r.output.splitlines() if x.startswith("MRENCLAVE "))
        return line.split()[1]

    enc = mrenclave("--image-key", "image_key")
    image = (inst / "build/image.img").read_bytes()
    assert mrenclave("--image-key", "image_key") == enc  # incremental, same bytes
    assert (inst / "build/image.img").read_bytes() == image
    assert mrenclave("-f", "--image-key", "image_key") == enc
    plain = mrenclave()
    assert hashes(inst)["image_type"] == "integrity-only"
    assert not image_is_encrypted(inst / "build/image.img")
    assert SECRET in (inst / "build/image.img").read_bytes()
    buildin = mrenclave("--image-key", "image_key", "--buildin-image-key")
    assert occlum(inst, "gen-image-key", "other_key").exit_code == 0
    other = mrenclave("--image-key", "other_key")
    assert len({enc, plain, buildin, other}) == 4
    # switching back reuses no stale leaves: the image is the one built from scratch
    assert mrenclave("--image-key", "image_key") == enc
    assert (inst / "build/image.img").read_bytes() == image
    # an absolute key path works as well as one relative to the instance
    assert mrenclave("--image-key", str(inst / "image_key")) == enc


@pytest.mark.parametrize(
    ("key_text", "why"),
    [
        (None, "does not exist"),
        (b"not a key\n", "is not an image key"),
        (b"c7-32-b3\n", "is not an image key"),
        (b"\xff\xfe" * 20, "is not an image key"),
    ],
)
def test_a_bad_key_file_leaves_the_build_alone(
    inst: Path, key_text: bytes | None, why: str
) -> None:
    assert occlum(inst, "build").exit_code == 0
    before = build_files(inst)
    bad = inst / "bad_key"
    if key_text is not None:
        bad.write_bytes(key_text)
    r = occlum(inst, "build", "--image-key", "bad_key")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and why in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.startswith("occlum: error: the image key ")
    assert build_files(inst) == before
    still_verifies(inst)


def test_buildin_key_needs_an_image_key(inst: Path) -> None:
    assert occlum(inst, "build").exit_code == 0
    before = build_files(inst)
    r = occlum(inst, "build", "--buildin-image-key")
    assert r.exit_code == 1
    assert r.stderr == (
        "occlum: error: --buildin-image-key needs --image-key FILE: there is no key to build in\n"
    )
    assert build_files(inst) == before


def test_buildin_key_without_an_initfs_directory(inst: Path) -> None:
    shutil.rmtree(inst / "initfs")
    r = occlum(inst, "build", "--image-key", "image_key", "--buildin-image-key")
    assert r.exit_code == 0, r.output
    fs = ImageFs(inst / "build/initfs.img", hashes(inst)["initfs"])
    try:
        assert read(fs, b"/etc/image_key") == (inst / "image_key").read_bytes()
        assert read(fs, b"/bin/init").startswith(b"\x7fELF")  # the default init, put back
    finally:
        fs.close()
    assert not (inst / "initfs" / "etc" / "image_key").exists()  # the key only in the image
