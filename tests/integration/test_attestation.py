"""Occlum's /dev/sgx inside an instance, and ``occlum verify-quote`` on the host.

``tests/c/attest/sgx_dev.c`` runs only inside (there is no /dev/sgx natively): its output is
compared with ``sgx_dev.expected`` (the ``seal-*`` lines, key bytes, are compared between two
runs instead), and the quote it writes to the hostfs mount is verified on the host, accepted
as is and refused, each with its own line, when it is altered or the policy does not match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import libos
from libos import Instance, Result

ATTEST = Path(__file__).resolve().parent.parent / "c" / "attest"
PRODUCT_ID, VERSION = 7, 3

pytestmark = pytest.mark.needs_root


@dataclass
class Attested:
    inst: Instance
    share: Path
    env: dict[str, str]  # the platform key this test's instance runs on
    other_root: Path  # the root certificate of another platform
    first: Result
    second: Result


occlum = libos.occlum_cli


@pytest.fixture(scope="module")
def attested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attested]:
    work = tmp_path_factory.mktemp("attest")
    env = dict(os.environ, OCCLUM_PLATFORM_KEY=str(work / "platform" / "platform.key"))
    other = dict(os.environ, OCCLUM_PLATFORM_KEY=str(work / "other" / "platform.key"))
    saved = os.environ.get("OCCLUM_PLATFORM_KEY")
    os.environ["OCCLUM_PLATFORM_KEY"] = env["OCCLUM_PLATFORM_KEY"]  # for Instance.build
    try:
        share = work / "share"
        share.mkdir()
        binary = libos.compile_c(ATTEST / "sgx_dev.c", work / "sgx_dev")
        inst = Instance.new(work / "instance")
        inst.configure(hostfs=share)
        cfg = inst.config()
        metadata = cfg.setdefault("metadata", {})
        assert isinstance(metadata, dict)
        metadata.update(product_id=PRODUCT_ID, version_number=VERSION)
        inst.write_config(cfg)
        libos.place_with_dependencies(inst.image, {"/bin/sgx_dev": binary})
        inst.build()
        first = inst.run(["/bin/sgx_dev", "/host/quote.bin"], extra_env=env)
        (share / "quote.bin").rename(share / "first.bin")
        second = inst.run(["/bin/sgx_dev", "/host/quote.bin"], extra_env=env)
        other_root = work / "other-root.pem"
        printed = occlum(["print", "platform-root"], other)
        assert printed.code == 0, printed.describe()
        other_root.write_text(printed.stdout)
        yield Attested(inst, share, env, other_root, first, second)
    finally:
        if saved is None:
            os.environ.pop("OCCLUM_PLATFORM_KEY", None)
        else:
            os.environ["OCCLUM_PLATFORM_KEY"] = saved


def _seal_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("seal-")]


def test_sgx_device_inside_matches_expected(attested: Attested) -> None:
    for res in (attested.first, attested.second):
        assert res.code == 0, res.describe()
        assert "Traceback" not in res.stderr
    expected = (ATTEST / "sgx_dev.expected").read_text()
    mrenclave = occlum(["print", "mrenclave"], attested.env, attested.inst.path).stdout.strip()
    kept = [
        line.replace(mrenclave, "MRENCLAVE")
        for line in attested.first.stdout.splitlines()
        if not line.startswith("seal-")
    ]
    assert "\n".join(kept) + "\n" == expected, attested.first.stdout


def test_seal_keys_are_stable_across_runs_and_differ_by_policy(attested: Attested) -> None:
    first, second = _seal_lines(attested.first.stdout), _seal_lines(attested.second.stdout)
    assert len(first) == 2 and first == second
    assert first[0].split(": ")[1] != first[1].split(": ")[1]


def verify(attested: Attested, quote: Path, *options: str) -> Result:
    return occlum(["verify-quote", str(quote), *options], attested.env)


def test_host_accepts_the_quote_and_prints_mrenclave(attested: Attested) -> None:
    mrenclave = occlum(["print", "mrenclave"], attested.env, attested.inst.path).stdout.strip()
    mrsigner = occlum(["print", "mrsigner"], attested.env, attested.inst.path).stdout.strip()
    res = verify(
        attested, attested.share / "quote.bin", "--mrenclave", mrenclave, "--mrsigner",
        mrsigner, "--isv-prod-id", str(PRODUCT_ID), "--min-isv-svn", str(VERSION),
        "--report-data", b"sgx_dev report data".hex(),
    )  # fmt: skip
    assert res.code == 0, res.describe()
    assert re.search(rf"^MRENCLAVE\s+{mrenclave}$", res.stdout, re.M), res.stdout
    assert re.search(rf"^MRSIGNER\s+{mrsigner}$", res.stdout, re.M)
    assert re.search(rf"^ISVPRODID\s+{PRODUCT_ID}$", res.stdout, re.M)
    assert re.search(r"^DEBUG\s+yes$", res.stdout, re.M)
    # the root printed for other machines verifies it as well
    root = attested.share / "root.pem"
    root.write_text(occlum(["print", "platform-root"], attested.env).stdout)
    assert verify(attested, attested.share / "quote.bin", "--root-cert", str(root)).code == 0


def _altered(attested: Attested, name: str, offset: int) -> Path:
    data = bytearray((attested.share / "first.bin").read_bytes())
    data[offset] ^= 0x01
    path = attested.share / name
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("body", "quote signature does not verify with the attestation key"),
        ("signature", "quote signature does not verify with the attestation key"),
        ("qe-report", "QE report signature does not verify"),
        ("other-platform", "the chain's root is not the trusted platform root"),
        ("mrenclave", "MRENCLAVE"),
        ("mrsigner", "MRSIGNER"),
        ("isvsvn", f"ISVSVN {VERSION} is below the minimum {VERSION + 1}"),
        ("debug", "the enclave is debuggable"),
    ],
)
def test_host_refuses_with_the_failed_check(attested: Attested, case: str, expected: str) -> None:
    quote = attested.share / "first.bin"
    options: list[str] = []
    if case == "body":
        quote = _altered(attested, "body.bin", 48 + 64)  # a byte of MRENCLAVE
    elif case == "signature":
        quote = _altered(attested, "sig.bin", 48 + 384 + 4 + 10)
    elif case == "qe-report":
        quote = _altered(attested, "qe.bin", 48 + 384 + 4 + 128 + 300)
    elif case == "other-platform":
        options = ["--root-cert", str(attested.other_root)]
    elif case in ("mrenclave", "mrsigner"):
        options = [f"--{case}", "ab" * 32]
    elif case == "isvsvn":
        options = ["--min-isv-svn", str(VERSION + 1)]
    elif case == "debug":
        options = ["--reject-debug"]
    res = verify(attested, quote, *options)
    assert res.code == 1, res.describe()
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "quote refused" in lines[0] and expected in lines[0], res.stderr
    assert res.stdout == ""


def test_bad_input_is_one_line(attested: Attested, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a quote")
    for args in (
        [str(junk)],
        [str(tmp_path / "missing.bin")],
        [str(attested.share / "first.bin"), "--mrenclave", "xyz"],
        [str(attested.share / "first.bin"), "--mrenclave", "ab"],
    ):
        res = occlum(["verify-quote", *args], attested.env)
        assert res.code != 0 and "Traceback" not in res.stderr, res.describe()
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
