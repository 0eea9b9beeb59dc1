"""An HTTPS client on the host that talks to a server only if its RA-TLS certificate proves
the expected enclave.

    occlum print platform-root > root.pem                 # on the platform, once
    python client.py --root root.pem --mrenclave "$(occlum print mrenclave)" HOST PORT

It does the TLS handshake without CA validation, then checks the server's certificate
(occlum.attest.verify): the quote verifies up to the platform root, its MRENCLAVE (and
MRSIGNER, ISVSVN, DEBUG as asked) match, and its report data is the hash of the certificate's
key. Only then does it send a GET request and print the answer. A refused server gets one line
on stderr naming the failed check, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from occlum.attest.verify import RatlsVerifyError, connect
from occlum.enclave.quote import QuotePolicy


def _hex32(text: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        value = b""
    if len(value) != 32:
        raise argparse.ArgumentTypeError(f"{text!r} is not 32 bytes in hex")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--root", required=True, type=Path, help="the platform's root (PEM)")
    parser.add_argument("--mrenclave", required=True, type=_hex32)
    parser.add_argument("--mrsigner", type=_hex32)
    parser.add_argument("--min-isv-svn", type=int)
    parser.add_argument("--reject-debug", action="store_true")
    parser.add_argument("--path", default="/")
    args = parser.parse_args(argv)
    try:
        root = args.root.read_bytes()
    except OSError as e:
        print(f"client: cannot read {args.root}: {e.strerror}", file=sys.stderr)
        return 2
    policy = QuotePolicy(trusted_root=root, mrenclave=args.mrenclave, mrsigner=args.mrsigner,
                         min_isv_svn=args.min_isv_svn, allow_debug=not args.reject_debug)  # fmt: skip
    try:
        tls, body = connect(args.host, args.port, policy)
    except RatlsVerifyError as e:
        print(f"client: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"client: cannot connect to {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    with tls:
        print(f"client: server attested, MRENCLAVE {body.mrenclave.hex()}", file=sys.stderr)
        request = f"GET {args.path} HTTP/1.0\r\nHost: {args.host}\r\n\r\n".encode()
        tls.sendall(request)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    _, _, payload = answer.partition(b"\r\n\r\n")
    sys.stdout.buffer.write(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
