"""The quote builder and verifier, reports and EGETKEY of the simulated platform."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libos import examples
from occlum.enclave.keys import load_platform_key
from occlum.enclave.platform_attest import (
    AttestationPlatform,
    chain_path,
    load_attestation_platform,
)
from occlum.enclave.quote import (
    HEADER_SIZE,
    MalformedQuote,
    QuoteError,
    QuotePolicy,
    make_quote,
    parse_quote,
    quote_size,
    verify_quote,
)
from occlum.enclave.report import (
    KEY_REQUEST_SIZE,
    EnclaveIdentity,
    ReportBody,
    SgxRequestError,
    create_report,
    get_key,
    report_key_id,
    self_target,
    verify_report,
)
from occlum.errors import UserError

IDENTITY = EnclaveIdentity(bytes(range(32)), bytes(range(32, 64)), 7, 3, debuggable=False)
DATA = b"report data".ljust(64, b"\0")


def _platform(tmp: Path, name: str) -> AttestationPlatform:
    return load_attestation_platform(tmp / name / "platform.key")


@pytest.fixture(scope="module")
def platforms(tmp_path_factory: pytest.TempPathFactory) -> tuple[AttestationPlatform, ...]:
    tmp = tmp_path_factory.mktemp("platforms")
    return _platform(tmp, "a"), _platform(tmp, "b")


@pytest.fixture(scope="module")
def quote(platforms: tuple[AttestationPlatform, ...]) -> bytes:
    return make_quote(platforms[0], IDENTITY.body(DATA))


def test_quote_layout_and_round_trip(
    platforms: tuple[AttestationPlatform, ...], quote: bytes
) -> None:
    a = platforms[0]
    assert len(quote) == quote_size(a)
    assert struct.unpack_from("<HH", quote, 0) == (3, 2)
    assert quote[HEADER_SIZE : HEADER_SIZE + 384] == IDENTITY.body(DATA).pack()
    parsed = parse_quote(quote)
    assert parsed.cert_type == 5 and parsed.cert_data == a.chain_pem
    body = verify_quote(quote, QuotePolicy(a.root_pem, IDENTITY.mrenclave, IDENTITY.mrsigner, 7, 3,
                                           allow_debug=False, report_data=b"report data"))  # fmt: skip
    assert body == IDENTITY.body(DATA)


@settings(max_examples=examples(400))
@given(st.data())
def test_any_single_flipped_byte_is_refused(
    platforms: tuple[AttestationPlatform, ...], quote: bytes, data: st.DataObject
) -> None:
    offset = data.draw(st.integers(0, len(quote) - 1), label="offset")
    mask = data.draw(st.integers(1, 255), label="mask")
    altered = bytearray(quote)
    altered[offset] ^= mask
    with pytest.raises(QuoteError):
        verify_quote(bytes(altered), QuotePolicy(platforms[0].root_pem))


@settings(max_examples=examples(100))
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_are_refused_with_a_quote_error(
    platforms: tuple[AttestationPlatform, ...], junk: bytes
) -> None:
    with pytest.raises(QuoteError):
        verify_quote(junk, QuotePolicy(platforms[0].root_pem))


def test_truncated_and_extended_quotes_are_malformed(
    platforms: tuple[AttestationPlatform, ...], quote: bytes
) -> None:
    policy = QuotePolicy(platforms[0].root_pem)
    for bad in (quote[:-1], quote + b"\0", quote[:100]):
        with pytest.raises(MalformedQuote):
            verify_quote(bad, policy)


def test_quote_of_another_platform_is_refused(
    platforms: tuple[AttestationPlatform, ...], quote: bytes
) -> None:
    a, b = platforms
    with pytest.raises(QuoteError, match="not the trusted platform root"):
        verify_quote(quote, QuotePolicy(b.root_pem))
    # another platform's chain spliced onto this quote: its PCK key did not sign the QE report
    head = quote[: -len(a.chain_pem) - 6]
    sig_len = len(head) - (HEADER_SIZE + 384 + 4) + 6 + len(b.chain_pem)
    swapped = (
        head[: HEADER_SIZE + 384]
        + struct.pack("<I", sig_len)
        + head[HEADER_SIZE + 384 + 4 :]
        + struct.pack("<HI", 5, len(b.chain_pem))
        + b.chain_pem
    )
    with pytest.raises(QuoteError, match="QE report signature"):
        verify_quote(swapped, QuotePolicy(b.root_pem))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"mrenclave": bytes(32)}, "MRENCLAVE"),
        ({"mrsigner": bytes(32)}, "MRSIGNER"),
        ({"isv_prod_id": 8}, "ISVPRODID 7 is not the expected 8"),
        ({"min_isv_svn": 4}, "ISVSVN 3 is below the minimum 4"),
        ({"report_data": b"other"}, "report data"),
    ],
)
def test_each_policy_check_has_its_own_message(
    platforms: tuple[AttestationPlatform, ...], quote: bytes, policy: dict[str, object],
    message: str,
) -> None:  # fmt: skip
    with pytest.raises(QuoteError, match=message):
        verify_quote(quote, QuotePolicy(platforms[0].root_pem, **policy))  # type: ignore[arg-type]


def test_debug_enclave_against_a_non_debug_policy(
    platforms: tuple[AttestationPlatform, ...],
) -> None:
    a = platforms[0]
    debug = EnclaveIdentity(IDENTITY.mrenclave, IDENTITY.mrsigner, 7, 3, debuggable=True)
    q = make_quote(a, debug.body())
    assert verify_quote(q, QuotePolicy(a.root_pem)).debug
    with pytest.raises(QuoteError, match="debuggable"):
        verify_quote(q, QuotePolicy(a.root_pem, allow_debug=False))


def test_platform_identity_is_stable_and_its_certificates_are_checked(tmp_path: Path) -> None:
    a = _platform(tmp_path, "p")
    again = _platform(tmp_path, "p")
    assert again.root_pem == a.root_pem and again.attestation_key.public_raw == (
        a.attestation_key.public_raw
    )
    # certificates of another platform put beside this key are refused, not used
    other = _platform(tmp_path, "q")
    chain_path(tmp_path / "p" / "platform.key").write_bytes(other.chain_pem)
    with pytest.raises(UserError, match="do not belong to the platform key"):
        _platform(tmp_path, "p")
    with pytest.raises(UserError, match="missing"):
        load_attestation_platform(tmp_path / "none" / "platform.key", create=False)


# -- reports and EGETKEY --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pkey(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return load_platform_key(tmp_path_factory.mktemp("pk") / "platform.key")


def test_report_verifies_for_its_target_only(pkey: bytes) -> None:
    kid = report_key_id(b"boot")
    report = create_report(pkey, IDENTITY, self_target(IDENTITY), DATA, kid)
    assert len(report) == 432
    assert verify_report(pkey, IDENTITY, report) == IDENTITY.body(DATA)
    other = EnclaveIdentity(bytes(32), IDENTITY.mrsigner, 7, 3, debuggable=False)
    with pytest.raises(SgxRequestError):
        verify_report(pkey, other, report)
    for i in (0, 100, 383, 400, 431):
        bad = bytearray(report)
        bad[i] ^= 1
        with pytest.raises(SgxRequestError):
            verify_report(pkey, IDENTITY, bytes(bad))
    with pytest.raises(SgxRequestError):
        verify_report(bytes(32), IDENTITY, report)  # another platform


def _request(name: int = 4, policy: int = 1, isv_svn: int = 0, key_id: bytes = bytes(32)) -> bytes:
    req = bytearray(KEY_REQUEST_SIZE)
    struct.pack_into("<HHH", req, 0, name, policy, isv_svn)
    struct.pack_into("<Q", req, 24, 0xFF0000000000000B)
    req[40:72] = key_id
    return bytes(req)


def test_seal_keys_follow_their_policy(pkey: bytes) -> None:
    by_enclave = get_key(pkey, IDENTITY, _request(policy=1))
    by_signer = get_key(pkey, IDENTITY, _request(policy=2))
    assert len(by_enclave) == 16 and by_enclave != by_signer
    assert get_key(pkey, IDENTITY, _request(policy=1)) == by_enclave
    rebuilt = EnclaveIdentity(bytes(32), IDENTITY.mrsigner, 7, 3, debuggable=False)
    assert get_key(pkey, rebuilt, _request(policy=2)) == by_signer
    assert get_key(pkey, rebuilt, _request(policy=1)) != by_enclave
    other_product = EnclaveIdentity(IDENTITY.mrenclave, IDENTITY.mrsigner, 8, 3, False)
    assert get_key(pkey, other_product, _request(policy=2)) != by_signer
    # an older version's key can be derived, a newer one's cannot
    assert get_key(pkey, IDENTITY, _request(policy=2, isv_svn=2)) != by_signer
    with pytest.raises(SgxRequestError, match="ISVSVN 4"):
        get_key(pkey, IDENTITY, _request(policy=2, isv_svn=4))
    assert get_key(pkey, IDENTITY, _request(key_id=b"k" * 32)) != by_enclave


def test_report_key_checks_reports_and_bad_requests_are_refused(pkey: bytes) -> None:
    from occlum.crypto.cmac import aes_cmac

    kid = report_key_id(b"boot")
    report = create_report(pkey, IDENTITY, None, None, kid)
    key = get_key(pkey, IDENTITY, _request(name=3, key_id=report[384:416]))
    assert aes_cmac(key, report[:384]) == report[416:]
    for bad in (
        _request(name=1),
        _request(name=0),
        _request(name=9),
        _request(policy=0x40),
        _request()[:-1] + b"\1",
    ):
        with pytest.raises(SgxRequestError):
            get_key(pkey, IDENTITY, bad)


def test_report_body_round_trip() -> None:
    body = ReportBody(b"e" * 32, b"s" * 32, 1, 2, 7, report_data=b"d" * 64)
    assert ReportBody.unpack(body.pack()) == body
    assert len(body.pack()) == 384


def test_every_byte_flipped_is_refused(
    platforms: tuple[AttestationPlatform, ...], quote: bytes
) -> None:
    """The deterministic sweep beside the property: each byte, its low and high bit."""
    policy = QuotePolicy(platforms[0].root_pem)
    for offset in range(len(quote)):
        for mask in (0x01, 0x80):
            altered = bytearray(quote)
            altered[offset] ^= mask
            with pytest.raises(QuoteError):
                verify_quote(bytes(altered), policy)


def test_verify_quote_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from occlum.cli.main import cli

    monkeypatch.setenv("OCCLUM_PLATFORM_KEY", str(tmp_path / "pk" / "platform.key"))
    runner = CliRunner()
    missing = runner.invoke(cli, ["verify-quote", str(tmp_path / "q.bin")])
    assert missing.exit_code == 1 and "platform key" in missing.output  # none is created
    root = runner.invoke(cli, ["print", "platform-root"])
    assert root.exit_code == 0 and root.output.startswith("-----BEGIN CERTIFICATE-----")
    platform = load_attestation_platform()
    assert root.output.encode() == platform.root_pem
    quote = tmp_path / "q.bin"
    quote.write_bytes(make_quote(platform, IDENTITY.body(DATA)))
    ok = runner.invoke(cli, ["verify-quote", str(quote), "--mrenclave", IDENTITY.mrenclave.hex()])
    assert ok.exit_code == 0, ok.output
    assert f"MRENCLAVE   {IDENTITY.mrenclave.hex()}\n" in ok.output
    assert "ISVPRODID   7\n" in ok.output and "DEBUG       no\n" in ok.output
    other = _platform(tmp_path, "other")
    (tmp_path / "other.pem").write_bytes(other.root_pem)
    for options, message in (
        (["--root-cert", str(tmp_path / "other.pem")], "not the trusted platform root"),
        (["--mrsigner", "00" * 32], "MRSIGNER"),
        (["--min-isv-svn", "9"], "ISVSVN 3 is below the minimum 9"),
        (["--report-data", "ff"], "report data"),
        (["--mrenclave", "zz"], "is not hex"),
        (["--mrenclave", "00"], "must be 32 bytes"),
        (["--root-cert", str(tmp_path)], "is a directory"),
    ):
        res = runner.invoke(cli, ["verify-quote", str(quote), *options])
        assert res.exit_code == 1, (options, res.output)
        assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output
