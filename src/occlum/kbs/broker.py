"""The broker's decisions and its HTTP front (stdlib ``ThreadingHTTPServer``).

API (JSON bodies, documented in docs/attestation.md):

* ``POST /v1/challenge`` -> ``200 {"nonce": b64(32 random bytes), "expires_in": seconds}``
* ``POST /v1/secret/<name>`` with ``{"nonce": b64, "quote": b64, "pubkey": b64(X25519, 32)}``
  -> ``200 {"name", "pubkey": b64(broker's ephemeral X25519), "iv": b64, "ciphertext": b64}``
  (see ``crypto.envelope``: salt = the nonce, info = the name), released only if

  1. the nonce is one this broker gave, not yet used and not expired (it is used up by this
     request whatever its outcome, so a replay is refused);
  2. the quote verifies up to one of the broker's trusted platform roots;
  3. its report data is ``SHA-256(nonce || pubkey)`` followed by 32 zero bytes;
  4. the secret's policy holds (MRENCLAVE, MRSIGNER, ISVPRODID, minimum ISVSVN, debug).

Every refusal is ``{"error": "<one line naming the check>"}`` with 400 (malformed request),
403 (a check failed), 404 (no such secret or path) or 500 (the store entry is damaged); none
carries anything of the secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from occlum.crypto.envelope import EnvelopeError, seal_to
from occlum.enclave.quote import QuoteError, QuotePolicy, check_policy, verify_quote
from occlum.enclave.report import ReportBody
from occlum.kbs.client import report_data_for
from occlum.kbs.store import SecretStore, StoreError, check_name

NONCE_SIZE = 32
NONCE_TTL = 60.0
MAX_BODY = 1 << 20
MAX_NONCES = 10000


@dataclass(slots=True)
class Refusal(Exception):
    status: int
    reason: str


class Broker:
    """Nonces and release decisions; the HTTP handler only translates."""

    def __init__(self, store: SecretStore, roots: list[bytes], ttl: float = NONCE_TTL) -> None:
        if not roots:
            raise StoreError("the broker needs at least one trusted platform root")
        self.store = store
        self.roots = roots
        self.ttl = ttl
        self._nonces: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def challenge(self) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        now = time.monotonic()
        with self._lock:
            for old in [n for n, t in self._nonces.items() if t <= now]:
                del self._nonces[old]
            if len(self._nonces) >= MAX_NONCES:
                raise Refusal(503, "too many outstanding challenges; try again later")
            self._nonces[nonce] = now + self.ttl
        return nonce

    def _use_nonce(self, nonce: bytes) -> None:
        with self._lock:
            expiry = self._nonces.pop(nonce, None)
        if expiry is None:
            raise Refusal(403, "nonce refused: unknown or already used (a replay)")
        if time.monotonic() > expiry:
            raise Refusal(403, "nonce refused: expired")

    def _verified(self, quote: bytes) -> ReportBody:
        failure = None
        for root in self.roots:
            try:
                return verify_quote(quote, QuotePolicy(trusted_root=root))
            except QuoteError as e:
                failure = e
        raise Refusal(403, f"quote refused: {failure}")

    def release(self, name: str, nonce: bytes, quote: bytes, pubkey: bytes) -> dict[str, str]:
        try:
            check_name(name)
        except StoreError as e:
            raise Refusal(404, str(e))
        self._use_nonce(nonce)
        try:
            policy, secret = self.store.open(name)
        except KeyError:
            raise Refusal(404, f"no secret named {name!r}")
        except StoreError as e:
            raise Refusal(500, str(e))
        body = self._verified(quote)
        if not hmac.compare_digest(body.report_data, report_data_for(nonce, pubkey)):
            raise Refusal(
                403, "quote refused: report data is not SHA-256(nonce || pubkey) || 32 zeros"
            )
        try:
            check_policy(body, policy.quote_policy(self.roots[0]))
        except QuoteError as e:
            raise Refusal(403, f"policy of {name!r} refused: {e}")
        try:
            env = seal_to(pubkey, secret, nonce, name.encode())
        except EnvelopeError as e:
            raise Refusal(400, f"pubkey refused: {e}")
        b64 = base64.b64encode
        return {
            "name": name,
            "pubkey": b64(env.sender_public).decode(),
            "iv": b64(env.iv).decode(),
            "ciphertext": b64(env.ciphertext).decode(),
        }


def _field(req: dict[str, Any], key: str, size: int | None = None) -> bytes:
    value = req.get(key)
    if not isinstance(value, str):
        raise Refusal(400, f"field {key!r} is missing or not a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(400, f"field {key!r} is not base64")
    if size is not None and len(raw) != size:
        raise Refusal(400, f"field {key!r} must be {size} bytes, not {len(raw)}")
    return raw


class _Handler(BaseHTTPRequestHandler):
    server: KbsServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stalls mid-request gives its thread back

    def _send(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _request(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise Refusal(400, "bad Content-Length")
        if not 0 <= length <= MAX_BODY:
            raise Refusal(400, f"request body of {length} bytes (at most {MAX_BODY})")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            req = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Refusal(400, "request body is not JSON")
        if not isinstance(req, dict):
            raise Refusal(400, "request body is not a JSON object")
        return req

    def do_POST(self) -> None:
        broker = self.server.broker
        try:
            req = self._request()
            if self.path == "/v1/challenge":
                nonce = broker.challenge()
                self._send(
                    200,
                    {"nonce": base64.b64encode(nonce).decode(), "expires_in": int(broker.ttl)},
                )
                return
            prefix = "/v1/secret/"
            if not self.path.startswith(prefix):
                raise Refusal(404, f"no such endpoint: POST {self.path}")
            name = self.path[len(prefix) :]
            result = broker.release(
                name,
                _field(req, "nonce", NONCE_SIZE),
                _field(req, "quote"),
                _field(req, "pubkey", 32),
            )
            self.server.log(f"released {name!r} to {self.client_address[0]}")
            self._send(200, result)
        except Refusal as r:
            self.server.log(f"refused {self.path} from {self.client_address[0]}: {r.reason}")
            self._send(r.status, {"error": r.reason})

    def do_GET(self) -> None:
        self._send(405, {"error": f"use POST for {self.path}"})

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per decision is logged by do_POST instead


class KbsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], broker: Broker, log: Any = None) -> None:
        super().__init__(address, _Handler)
        self.broker = broker
        self._log = log

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)
