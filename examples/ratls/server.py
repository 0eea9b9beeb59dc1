"""An HTTPS server inside an instance, presenting an RA-TLS certificate.

Run inside (the image holds python3, its standard library, Debian's cryptography and the few
files of occlum.attest this needs; see bom.yaml):

    occlum run /usr/bin/python3 /app/server.py [PORT [REQUESTS]]

It makes a fresh key and a certificate carrying a quote of this enclave over that key
(occlum.attest.ratls), then serves GET requests over TLS with it: REQUESTS of them, or for
ever when REQUESTS is not given.
"""

from __future__ import annotations

import http.server
import sys

from occlum.attest.ratls import RatlsError, server_context

MESSAGE = b"hello from inside the enclave\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(MESSAGE)))
        self.end_headers()
        self.wfile.write(MESSAGE)

    def log_message(self, format: str, *args: object) -> None:
        print("server:", format % args, file=sys.stderr, flush=True)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8443
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else None
    try:
        ctx = server_context()
    except RatlsError as e:
        sys.exit(f"server: {e}")
    httpd = http.server.HTTPServer(("0.0.0.0", port), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print(f"RA-TLS server listening on port {port}", flush=True)
    if requests is None:
        httpd.serve_forever()
    else:
        for _ in range(requests):
            httpd.handle_request()
    httpd.server_close()


if __name__ == "__main__":
    main()
