"""The key broker: its store at rest, the envelope crypto, and every release decision over
its real HTTP API, with quotes made by simulated platforms."""

from __future__ import annotations

import base64
import json
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from occlum.crypto.envelope import EnvelopeError, EphemeralKey, seal_to
from occlum.enclave.platform_attest import AttestationPlatform, load_attestation_platform
from occlum.enclave.quote import make_quote
from occlum.enclave.report import EnclaveIdentity
from occlum.kbs.broker import Broker, KbsServer
from occlum.kbs.client import KbsError, fetch_secret, report_data_for
from occlum.kbs.store import KEY_NAME, SecretPolicy, SecretStore, StoreError

SECRET = b"the database password: correct horse battery staple"
MRENCLAVE, MRSIGNER = bytes(range(32)), bytes(range(32, 64))
IDENTITY = EnclaveIdentity(MRENCLAVE, MRSIGNER, 7, 3, debuggable=False)
POLICY = SecretPolicy(mrenclave=MRENCLAVE.hex(), mrsigner=MRSIGNER.hex(), isv_prod_id=7,
                      min_isv_svn=3)  # fmt: skip


# -- the envelope ----------------------------------------------------------------------------


def test_envelope_opens_only_with_its_key_salt_and_info() -> None:
    key = EphemeralKey()
    env = seal_to(key.public_raw, SECRET, b"nonce", b"db")
    assert SECRET not in env.ciphertext
    assert key.open(env, b"nonce", b"db") == SECRET
    with pytest.raises(EnvelopeError):
        EphemeralKey().open(env, b"nonce", b"db")
    with pytest.raises(EnvelopeError):
        key.open(env, b"other nonce", b"db")
    with pytest.raises(EnvelopeError):
        key.open(env, b"nonce", b"other name")
    flipped = bytearray(env.ciphertext)
    flipped[0] ^= 1
    with pytest.raises(EnvelopeError):
        key.open(replace(env, ciphertext=bytes(flipped)), b"nonce", b"db")


def test_envelope_refuses_bad_public_keys() -> None:
    with pytest.raises(EnvelopeError, match="32 bytes"):
        seal_to(b"short", SECRET, b"n", b"i")
    with pytest.raises(EnvelopeError, match="unusable"):
        seal_to(bytes(32), SECRET, b"n", b"i")  # a low-order point


# -- the store -------------------------------------------------------------------------------


def test_store_keeps_secrets_encrypted_and_opens_them(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "store", create=True)
    assert (tmp_path / "store" / KEY_NAME).stat().st_mode & 0o777 == 0o600
    store.add("db", SECRET, POLICY)
    for path in (tmp_path / "store").rglob("*"):
        if path.is_file():
            assert SECRET[:16] not in path.read_bytes(), path
            assert base64.b64encode(SECRET)[:16] not in path.read_bytes(), path
    again = SecretStore(tmp_path / "store")
    assert again.names() == ["db"]
    assert again.open("db") == (POLICY, SECRET)
    with pytest.raises(KeyError):
        again.open("other")


def test_store_refuses_an_edited_policy_and_another_key(tmp_path: Path) -> None:
    root = tmp_path / "store"
    SecretStore(root, create=True).add("db", SECRET, POLICY)
    entry_path = root / "secrets" / "db.json"
    entry = json.loads(entry_path.read_text())
    entry["policy"]["allow_debug"] = True
    entry_path.write_text(json.dumps(entry))
    with pytest.raises(StoreError, match="does not open"):
        SecretStore(root).open("db")
    SecretStore(root).add("db", SECRET, POLICY)
    (root / KEY_NAME).write_bytes(os.urandom(32))
    with pytest.raises(StoreError, match="does not open"):
        SecretStore(root).open("db")


def test_store_refuses_a_key_others_can_read_and_bad_names(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = SecretStore(root, create=True)
    (root / KEY_NAME).chmod(0o644)
    with pytest.raises(StoreError, match="readable by others"):
        SecretStore(root)
    with pytest.raises(StoreError, match="not a key broker store"):
        SecretStore(tmp_path / "nothing")
    for bad in ("", ".hidden", "a/b", "../x", "x" * 65):
        with pytest.raises(StoreError, match="secret name"):
            store.add(bad, SECRET, POLICY)
    with pytest.raises(StoreError, match="MRENCLAVE or an MRSIGNER"):
        SecretPolicy()


# -- the broker over HTTP --------------------------------------------------------------------


@dataclass
class Setup:
    url: str
    platform: AttestationPlatform
    other: AttestationPlatform
    broker: Broker


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("kbs")
    platform = load_attestation_platform(tmp / "a" / "platform.key")
    other = load_attestation_platform(tmp / "b" / "platform.key")
    store = SecretStore(tmp / "store", create=True)
    store.add("db", SECRET, POLICY)
    store.add("debug-ok", SECRET, replace(POLICY, allow_debug=True))
    store.add("signer-only", SECRET, SecretPolicy(mrsigner=MRSIGNER.hex()))
    broker = Broker(store, [platform.root_pem])
    server = KbsServer(("127.0.0.1", 0), broker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Setup(f"http://127.0.0.1:{server.server_port}", platform, other, broker)
    server.shutdown()
    server.server_close()


def quoter(
    platform: AttestationPlatform, identity: EnclaveIdentity = IDENTITY
) -> Callable[[bytes], bytes]:
    return lambda data: make_quote(platform, identity.body(data))


def test_a_matching_enclave_gets_the_secret(setup: Setup) -> None:
    assert fetch_secret(setup.url, "db", quoter(setup.platform)) == SECRET
    assert fetch_secret(setup.url, "signer-only", quoter(setup.platform)) == SECRET
    debug = replace(IDENTITY, debuggable=True)
    assert fetch_secret(setup.url, "debug-ok", quoter(setup.platform, debug)) == SECRET


def _tampered(platform: AttestationPlatform) -> Callable[[bytes], bytes]:
    def make(data: bytes) -> bytes:
        quote = bytearray(make_quote(platform, IDENTITY.body(data)))
        quote[48 + 64] ^= 1  # a byte of MRENCLAVE
        return bytes(quote)

    return make


def _unbound(platform: AttestationPlatform) -> Callable[[bytes], bytes]:
    return lambda data: make_quote(platform, IDENTITY.body(bytes(64)))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("tampered", "quote refused: quote signature does not verify with the attestation key"),
        ("other-platform", "quote refused: PCK certificate chain refused"),
        ("unbound", "quote refused: report data is not SHA-256(nonce || pubkey)"),
        ("mrenclave", "policy of 'db' refused: MRENCLAVE"),
        ("mrsigner", "policy of 'db' refused: MRSIGNER"),
        ("isvprodid", "policy of 'db' refused: ISVPRODID 8 is not the expected 7"),
        ("isvsvn", "policy of 'db' refused: ISVSVN 2 is below the minimum 3"),
        ("debug", "policy of 'db' refused: the enclave is debuggable"),
        ("unknown", "no secret named 'nothing'"),
    ],
)
def test_each_refusal_names_its_check(setup: Setup, case: str, expected: str) -> None:
    make = {
        "tampered": _tampered(setup.platform),
        "other-platform": quoter(setup.other),
        "unbound": _unbound(setup.platform),
        "mrenclave": quoter(setup.platform, replace(IDENTITY, mrenclave=bytes(32))),
        "mrsigner": quoter(setup.platform, replace(IDENTITY, mrsigner=bytes(32))),
        "isvprodid": quoter(setup.platform, replace(IDENTITY, isv_prod_id=8)),
        "isvsvn": quoter(setup.platform, replace(IDENTITY, isv_svn=2)),
        "debug": quoter(setup.platform, replace(IDENTITY, debuggable=True)),
    }.get(case, quoter(setup.platform))
    with pytest.raises(KbsError) as info:
        fetch_secret(setup.url, "nothing" if case == "unknown" else "db", make)
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    assert SECRET.decode() not in message


def _post(url: str, body: dict[str, str]) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _request(setup: Setup, nonce: bytes) -> dict[str, str]:
    key = EphemeralKey()
    quote = make_quote(setup.platform, IDENTITY.body(report_data_for(nonce, key.public_raw)))
    b64 = base64.b64encode
    return {"nonce": b64(nonce).decode(), "quote": b64(quote).decode(),
            "pubkey": b64(key.public_raw).decode()}  # fmt: skip


def test_a_replayed_nonce_is_refused(setup: Setup) -> None:
    status, answer = _post(f"{setup.url}/v1/challenge", {})
    assert status == 200
    nonce = base64.b64decode(answer["nonce"])
    request = _request(setup, nonce)
    status, answer = _post(f"{setup.url}/v1/secret/db", request)
    assert status == 200 and set(answer) == {"name", "pubkey", "iv", "ciphertext"}
    status, answer = _post(f"{setup.url}/v1/secret/db", request)
    assert (status, answer) == (403, {"error": "nonce refused: unknown or already used (a replay)"})
    # a nonce the broker never gave is refused the same way
    status, answer = _post(f"{setup.url}/v1/secret/db", _request(setup, os.urandom(32)))
    assert status == 403 and "nonce refused" in answer["error"]


def test_an_expired_nonce_is_refused(setup: Setup) -> None:
    ttl = setup.broker.ttl
    setup.broker.ttl = -1.0
    try:
        status, answer = _post(f"{setup.url}/v1/challenge", {})
    finally:
        setup.broker.ttl = ttl
    status, answer = _post(
        f"{setup.url}/v1/secret/db", _request(setup, base64.b64decode(answer["nonce"]))
    )
    assert (status, answer) == (403, {"error": "nonce refused: expired"})


@pytest.mark.parametrize(
    ("path", "body", "status", "expected"),
    [
        ("/v1/secret/db", {}, 400, "field 'nonce' is missing"),
        ("/v1/secret/db", {"nonce": "!!"}, 400, "field 'nonce' is not base64"),
        ("/v1/secret/db", {"nonce": "AAAA"}, 400, "field 'nonce' must be 32 bytes"),
        ("/v1/nothing", {}, 404, "no such endpoint"),
        ("/v1/secret/..%2f", {}, 400, "field 'nonce'"),
    ],
)
def test_malformed_requests_are_refused(
    setup: Setup, path: str, body: dict[str, str], status: int, expected: str
) -> None:
    got, answer = _post(setup.url + path, body)
    assert got == status and expected in answer["error"], answer


def test_occlum_kbs_serve_answers_and_stops_on_sigterm(setup: Setup, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    root = tmp_path / "root.pem"
    root.write_bytes(setup.platform.root_pem)
    store = tmp_path / "store"
    SecretStore(store, create=True).add("db", SECRET, POLICY)
    occlum = str(Path(sys.executable).parent / "occlum")
    proc = subprocess.Popen(
        [occlum, "kbs", "serve", "--store", str(store), "--listen", "127.0.0.1:0",
         "--root-cert", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:"), first
        url = first.split()[-1]
        assert fetch_secret(url, "db", quoter(setup.platform)) == SECRET
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "released 'db'" in out and out.endswith("stopped\n") and SECRET.decode() not in out


def test_outstanding_challenges_are_bounded(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    import occlum.kbs.broker as broker_module

    monkeypatch.setattr(broker_module, "MAX_NONCES", 0)
    status, answer = _post(f"{setup.url}/v1/challenge", {})
    assert (status, answer) == (503, {"error": "too many outstanding challenges; try again later"})
