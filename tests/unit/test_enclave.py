"""The simulated enclave: MRENCLAVE, SIGSTRUCT/MRSIGNER, the platform key, sealing and image
keys, the sealed build and the ``occlum print``/``gen-image-key`` commands."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from occlum.cli.main import cli
from occlum.crypto.sign import generate_signing_key, load_signing_key
from occlum.enclave import build_seal, keys, measure
from occlum.enclave.build_seal import (
    DEV_KEY_NAME,
    SIGSTRUCT_NAME,
    read_measurement,
    seal_build,
    verify_build,
)
from occlum.enclave.sigstruct import Sigstruct, mrsigner_of, sign_enclave, verify_sigstruct
from occlum.errors import UserError

CONFIG = b'{"resource_limits": {"user_space_size": "300MB"}}\n'
IMAGES = {"image": "11" * 32, "initfs": "22" * 32}
META: dict[str, object] = {"product_id": 7, "version_number": 3, "debuggable": False}


@pytest.fixture(scope="module")
def key_a() -> bytes:
    return generate_signing_key()


@pytest.fixture(scope="module")
def key_b() -> bytes:
    return generate_signing_key()


@pytest.fixture(autouse=True)
def fast_dev_key(monkeypatch: pytest.MonkeyPatch, key_b: bytes) -> None:
    # RSA-3072 generation takes up to a second; one per module is enough for what is tested
    monkeypatch.setattr(build_seal, "generate_signing_key", lambda: key_b)


def one_line(e: pytest.ExceptionInfo[UserError]) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# --- measurement ----------------------------------------------------------------------------


def test_libos_digest_is_cached_and_32_bytes() -> None:
    d = measure.libos_digest()
    assert len(d) == 32
    assert measure.libos_digest() is d


def fake_libos(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "pkg" / "sub" / "mod.py").write_text("y = 2\n")
    (root / "pkg" / "py.typed").write_text("")
    return root / "pkg"


def test_libos_digest_covers_paths_and_contents_not_bytecode(tmp_path: Path) -> None:
    pkg = fake_libos(tmp_path)
    d0 = measure.compute_libos_digest(pkg)
    assert measure.compute_libos_digest(pkg) == d0
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0" * 10)
    (pkg / "sub" / "stale.pyc").write_bytes(b"\1")
    assert measure.compute_libos_digest(pkg) == d0

    (pkg / "sub" / "mod.py").write_text("y = 3\n")
    d1 = measure.compute_libos_digest(pkg)
    assert d1 != d0
    (pkg / "sub" / "mod.py").rename(pkg / "sub" / "mod2.py")
    assert measure.compute_libos_digest(pkg) not in (d0, d1)
    (pkg / "sub" / "mod2.py").rename(pkg / "sub" / "mod.py")
    assert measure.compute_libos_digest(pkg) == d1
    (pkg / "data.bin").write_bytes(b"")  # package data counts, even empty
    assert measure.compute_libos_digest(pkg) != d1


def test_mrenclave_is_deterministic_and_every_input_counts() -> None:
    libos = measure.libos_digest()
    base = measure.mrenclave(libos, CONFIG, IMAGES)
    assert len(base) == 32
    assert measure.mrenclave(libos, CONFIG, dict(reversed(IMAGES.items()))) == base
    other_libos = bytes([libos[0] ^ 1]) + libos[1:]
    assert measure.mrenclave(other_libos, CONFIG, IMAGES) != base
    assert measure.mrenclave(libos, CONFIG.replace(b"300", b"301"), IMAGES) != base
    assert measure.mrenclave(libos, CONFIG + b" ", IMAGES) != base
    flipped = {**IMAGES, "image": "10" + "11" * 31}
    assert measure.mrenclave(libos, CONFIG, flipped) != base
    assert measure.mrenclave(libos, CONFIG, {"image": IMAGES["image"]}) != base
    # names are measured too: swapping which image has which hash is a different enclave
    swapped = {"image": IMAGES["initfs"], "initfs": IMAGES["image"]}
    assert measure.mrenclave(libos, CONFIG, swapped) != base


def test_mrenclave_log_records_cannot_be_re_split() -> None:
    libos = measure.libos_digest()
    assert measure.mrenclave(libos, b"ab", {"c": "d"}) != measure.mrenclave(
        libos, b"a", {"bc": "d"}
    )


# --- SIGSTRUCT and MRSIGNER -----------------------------------------------------------------


def test_sign_verify_round_trip_through_json(key_a: bytes) -> None:
    mre = measure.mrenclave(measure.libos_digest(), CONFIG, IMAGES)
    sig = sign_enclave(mre, META, key_a)
    verify_sigstruct(sig)
    assert (sig.isv_prod_id, sig.isv_svn, sig.debuggable) == (7, 3, False)
    again = Sigstruct.from_json(sig.to_json())
    assert again == sig
    verify_sigstruct(again)
    # PKCS#1 v1.5 is deterministic: the same enclave and key sign to the same document
    assert sign_enclave(mre, META, key_a).to_json() == sig.to_json()


def test_mrsigner_is_the_hash_of_the_little_endian_modulus(key_a: bytes, key_b: bytes) -> None:
    mre = b"\x01" * 32
    sa = sign_enclave(mre, META, key_a)
    assert sa.mrsigner == sign_enclave(b"\x02" * 32, {}, key_a).mrsigner
    assert sa.mrsigner != sign_enclave(mre, META, key_b).mrsigner
    n = load_signing_key(key_a).modulus
    assert sa.mrsigner == mrsigner_of(n.to_bytes(384, "little"))


@pytest.mark.parametrize(
    "change",
    [
        {"mrenclave": b"\x00" * 32},
        {"isv_prod_id": 8},
        {"isv_svn": 4},
        {"debuggable": True},
    ],
)
def test_tampered_sigstruct_fails(key_a: bytes, change: dict[str, object]) -> None:
    sig = sign_enclave(b"\x01" * 32, META, key_a)
    bad = dataclasses.replace(sig, **change)  # type: ignore[arg-type]
    with pytest.raises(UserError) as e:
        verify_sigstruct(bad)
    assert "signature does not verify" in one_line(e)


def test_sigstruct_signed_by_another_key_fails(key_a: bytes, key_b: bytes) -> None:
    sig = sign_enclave(b"\x01" * 32, META, key_a)
    other = sign_enclave(b"\x01" * 32, META, key_b)
    with pytest.raises(UserError):
        verify_sigstruct(dataclasses.replace(sig, modulus=other.modulus))
    flipped = bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
    with pytest.raises(UserError):
        verify_sigstruct(dataclasses.replace(sig, signature=flipped))


def test_damaged_sigstruct_documents_are_one_line_errors(key_a: bytes) -> None:
    doc = json.loads(sign_enclave(b"\x01" * 32, META, key_a).to_json())
    cases = [
        "not json",
        json.dumps([1]),
        json.dumps({**doc, "format": "x"}),
        json.dumps({**doc, "mrenclave": "zz"}),
        json.dumps({**doc, "mrenclave": "00"}),
        json.dumps({**doc, "isv_svn": 70000}),
        json.dumps({**doc, "debuggable": "yes"}),
        json.dumps({**doc, "mrsigner": "00" * 32}),
        json.dumps({**doc, "measured": 5}),
    ]
    for text in cases:
        with pytest.raises(UserError) as e:
            Sigstruct.from_json(text)
        one_line(e)


def test_metadata_out_of_range_is_a_user_error(key_a: bytes) -> None:
    with pytest.raises(UserError) as e:
        sign_enclave(b"\x01" * 32, {"product_id": 1 << 16}, key_a)
    assert "product_id" in one_line(e)


# --- signing keys ---------------------------------------------------------------------------


def test_bad_signing_keys_are_one_line_errors(key_a: bytes) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    encrypted = serialization.load_pem_private_key(key_a, None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    rsa_65537 = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for pem, words in [
        (b"garbage", "not a PEM private key"),
        (b"", "not a PEM private key"),
        (key_a[:200], "not a PEM private key"),
        (encrypted, "is encrypted"),
        (ec_key, "not an RSA key"),
        (rsa_65537, "RSA-2048 with exponent 65537"),
    ]:
        with pytest.raises(UserError) as e:
            load_signing_key(pem, "key.pem")
        msg = one_line(e)
        assert msg.startswith("key.pem ") and words in msg, msg


def test_generated_key_is_sgx_shaped(key_a: bytes) -> None:
    assert key_a.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert load_signing_key(key_a).modulus.bit_length() == 3072


# --- the platform key and sealing keys ------------------------------------------------------


def test_platform_key_created_0600_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dir" / "platform.key"
    monkeypatch.setenv(keys.PLATFORM_KEY_ENV, str(path))
    assert keys.platform_key_path() == path
    k = keys.load_platform_key()
    assert len(k) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load_platform_key() == k
    assert keys.load_platform_key(path, create=False) == k
    assert [p.name for p in path.parent.iterdir()] == ["platform.key"]  # no temporaries left


def test_platform_key_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(keys.PLATFORM_KEY_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keys.platform_key_path() == tmp_path / ".occlum" / "platform.key"


def test_platform_key_refused_when_exposed_or_damaged(tmp_path: Path) -> None:
    path = tmp_path / "platform.key"
    keys.load_platform_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(UserError) as e:
        keys.load_platform_key(path)
    assert "accessible by other users (mode 0644)" in one_line(e)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(UserError) as e:
        keys.load_platform_key(path)
    assert "5 bytes long, not 32" in one_line(e)
    path.write_bytes(b"x" * 33)
    with pytest.raises(UserError):
        keys.load_platform_key(path)
    with pytest.raises(UserError) as e:
        keys.load_platform_key(tmp_path / "missing.key", create=False)
    assert "is missing" in one_line(e)
    with pytest.raises(UserError) as e:
        keys.load_platform_key(tmp_path)
    one_line(e)


def test_sealing_keys_differ_by_policy_identity_platform_and_label() -> None:
    pk, mre, mrs = b"p" * 32, b"e" * 32, b"s" * 32
    base = keys.sealing_key(pk, "MRENCLAVE", mre, mrs, b"root")
    assert len(base) == 32
    assert keys.sealing_key(pk, "MRENCLAVE", mre, mrs, b"root") == base
    assert keys.sealing_key(pk, "MRSIGNER", mre, mrs, b"root") != base
    assert keys.sealing_key(pk, "MRENCLAVE", b"E" * 32, mrs, b"root") != base
    assert keys.sealing_key(b"P" * 32, "MRENCLAVE", mre, mrs, b"root") != base
    assert keys.sealing_key(pk, "MRENCLAVE", mre, mrs, b"other") != base
    # MRENCLAVE policy ignores the signer; MRSIGNER policy survives a new MRENCLAVE
    assert keys.sealing_key(pk, "MRENCLAVE", mre, b"S" * 32, b"root") == base
    signer = keys.sealing_key(pk, "MRSIGNER", mre, mrs, b"root")
    assert keys.sealing_key(pk, "MRSIGNER", b"E" * 32, mrs, b"root") == signer
    assert keys.sealing_key(pk, "MRSIGNER", mre, mrs, b"root", isv_prod_id=1) != signer
    with pytest.raises(ValueError):
        keys.sealing_key(pk, "BOTH", mre, mrs, b"root")  # type: ignore[arg-type]


# --- image keys -----------------------------------------------------------------------------


def test_image_key_file_in_occlums_format(tmp_path: Path) -> None:
    path = tmp_path / "image_key"
    key = keys.write_image_key(path)
    text = path.read_text()
    assert len(key) == 16 and len(text) == 48 and text.endswith("\n")
    assert text == "-".join(f"{b:02x}" for b in key) + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load_image_key(path) == key
    with pytest.raises(UserError) as e:
        keys.write_image_key(path)
    assert "already exists" in one_line(e)
    assert keys.write_image_key(path, force=True) != key
    # Occlum's own files, and a 256-bit key, load too
    path.write_text("c7-32-b3-ed-44-df-ec-7b-25-2d-9a-32-38-8d-58-61\n")
    assert keys.load_image_key(path) == bytes.fromhex("c732b3ed44dfec7b252d9a32388d5861")
    path.write_text("ab" * 32)
    assert len(keys.load_image_key(path)) == 32


def test_bad_image_keys_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "k"
    for content in [b"", b"c7-32", b"zz" * 16, b"\xff" * 16, b"a-bc" * 8, b"ab" * 17]:
        path.write_bytes(content)
        with pytest.raises(UserError) as e:
            keys.load_image_key(path)
        assert "is not an image key" in one_line(e)
    with pytest.raises(UserError) as e:
        keys.load_image_key(tmp_path / "missing")
    assert "does not exist" in one_line(e)


# --- sealed builds --------------------------------------------------------------------------


def test_seal_build_with_dev_key_then_verify(tmp_path: Path) -> None:
    sig = seal_build(tmp_path, CONFIG, IMAGES, META, None)
    key_file = tmp_path / DEV_KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    dev_key = key_file.read_bytes()
    assert read_measurement(tmp_path) == (sig.mrenclave.hex(), sig.mrsigner.hex())
    assert verify_build(tmp_path, CONFIG, IMAGES) == sig
    # the development key is made once per instance: MRSIGNER stays across rebuilds
    again = seal_build(tmp_path, CONFIG + b"\n", IMAGES, META, None)
    assert key_file.read_bytes() == dev_key
    assert again.mrsigner == sig.mrsigner and again.mrenclave != sig.mrenclave


def test_seal_build_with_a_given_key(tmp_path: Path, key_a: bytes) -> None:
    sig = seal_build(tmp_path, CONFIG, IMAGES, META, key_a)
    assert not (tmp_path / DEV_KEY_NAME).exists()
    assert sig.mrsigner == sign_enclave(b"\x01" * 32, {}, key_a).mrsigner


def test_seal_build_with_a_bad_key(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        seal_build(
            tmp_path, CONFIG, IMAGES, META, b"-----BEGIN NONSENSE-----\n", sign_key_source="k.pem"
        )
    assert one_line(e).startswith("k.pem is not a PEM private key")
    assert not (tmp_path / SIGSTRUCT_NAME).exists()


def test_verify_build_names_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seal_build(tmp_path, CONFIG, IMAGES, META, None)
    with pytest.raises(UserError) as e:
        verify_build(tmp_path, CONFIG + b" ", IMAGES)
    msg = one_line(e)
    assert msg.startswith("Occlum.json changed since `occlum build`")
    assert msg.endswith("(MRENCLAVE mismatch): run `occlum build`")
    with pytest.raises(UserError) as e:
        verify_build(tmp_path, CONFIG, {**IMAGES, "initfs": "23" * 32})
    assert one_line(e).startswith("the initfs file system changed")
    monkeypatch.setattr(build_seal, "libos_digest", lambda: b"\x00" * 32)
    with pytest.raises(UserError) as e:
        verify_build(tmp_path, CONFIG, IMAGES)
    assert one_line(e).startswith("the LibOS (the occlum package) changed")


def test_verify_build_without_the_unsigned_record(tmp_path: Path) -> None:
    seal_build(tmp_path, CONFIG, IMAGES, META, None)
    doc = json.loads((tmp_path / SIGSTRUCT_NAME).read_text())
    del doc["measured"]
    (tmp_path / SIGSTRUCT_NAME).write_text(json.dumps(doc))
    verify_build(tmp_path, CONFIG, IMAGES)
    with pytest.raises(UserError) as e:
        verify_build(tmp_path, CONFIG, {"image": "00"})
    assert one_line(e) == (
        "the image or Occlum.json changed since `occlum build` (MRENCLAVE mismatch): "
        "run `occlum build`"
    )


def test_verify_build_rejects_a_forged_mrenclave(tmp_path: Path) -> None:
    seal_build(tmp_path, CONFIG, IMAGES, META, None)
    forged = measure.mrenclave(measure.libos_digest(), b"evil", IMAGES)
    doc = json.loads((tmp_path / SIGSTRUCT_NAME).read_text())
    doc["mrenclave"] = forged.hex()
    (tmp_path / SIGSTRUCT_NAME).write_text(json.dumps(doc))
    with pytest.raises(UserError) as e:
        verify_build(tmp_path, b"evil", IMAGES)
    assert "signature does not verify" in one_line(e)


def test_not_built(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        read_measurement(tmp_path)
    assert one_line(e) == "instance not built: run `occlum build` first"


# --- the command line -----------------------------------------------------------------------


def occlum(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def inst(tmp_path: Path) -> Path:
    r = occlum("--instance-dir", str(tmp_path), "new", "app")
    assert r.exit_code == 0, r.output
    return tmp_path / "app"


def test_help_has_examples() -> None:
    for cmd in ("print", "gen-image-key"):
        r = occlum(cmd, "--help")
        assert r.exit_code == 0 and "Example:" in r.output, cmd


def test_print_measurements(inst: Path) -> None:
    r = occlum("--instance-dir", str(inst), "print", "mrenclave")
    assert r.exit_code == 1
    assert r.stderr == "occlum: error: instance not built: run `occlum build` first\n"
    sig = seal_build(inst / "build", CONFIG, IMAGES, META, None)
    r = occlum("--instance-dir", str(inst), "print", "mrenclave")
    assert (r.exit_code, r.stdout) == (0, sig.mrenclave.hex() + "\n")
    r = occlum("--instance-dir", str(inst), "print", "mrsigner")
    assert (r.exit_code, r.stdout) == (0, sig.mrsigner.hex() + "\n")
    r = occlum("--instance-dir", str(inst), "print", "conf_mac")
    assert r.exit_code == 2


def test_print_with_a_damaged_sigstruct(inst: Path) -> None:
    seal_build(inst / "build", CONFIG, IMAGES, META, None)
    path = inst / "build" / SIGSTRUCT_NAME
    doc = json.loads(path.read_text())
    doc["isv_svn"] = 9
    path.write_text(json.dumps(doc))
    r = occlum("--instance-dir", str(inst), "print", "mrsigner")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "signature does not verify" in r.stderr
    path.write_text("{")
    r = occlum("--instance-dir", str(inst), "print", "mrsigner")
    assert r.stderr == "occlum: error: build/sigstruct.json is not valid JSON: run `occlum build`\n"


def test_print_outside_an_instance(tmp_path: Path) -> None:
    r = occlum("--instance-dir", str(tmp_path), "print", "mrenclave")
    assert r.exit_code == 1 and "not an Occlum instance directory" in r.stderr


def test_gen_image_key_command(inst: Path, tmp_path: Path) -> None:
    r = occlum("--instance-dir", str(inst), "gen-image-key", "image_key")
    assert r.exit_code == 0, r.output
    key = keys.load_image_key(inst / "image_key")
    r = occlum("--instance-dir", str(inst), "gen-image-key", "image_key")
    assert r.exit_code == 1
    assert (
        r.stderr
        == f"occlum: error: {inst / 'image_key'} already exists: not overwriting it (use --force)\n"
    )
    assert keys.load_image_key(inst / "image_key") == key
    r = occlum("--instance-dir", str(inst), "gen-image-key", "--force", str(tmp_path / "abs_key"))
    assert r.exit_code == 0
    assert len(keys.load_image_key(tmp_path / "abs_key")) == 16
    r = occlum("--instance-dir", str(inst), "gen-image-key", "no/such/dir/key")
    assert r.exit_code == 1 and "is not a directory" in r.stderr
