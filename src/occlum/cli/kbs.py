"""``occlum kbs``: the key broker — keep secrets with a release policy, and serve them over
HTTP to enclaves whose fresh quote meets it (API: docs/attestation.md)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from occlum.cli.attest import CONTEXT, _hex, _read
from occlum.errors import UserError


@click.group("kbs", context_settings=CONTEXT, short_help="The key broker: serve secrets.")
def kbs() -> None:
    """A key broker: secrets stored encrypted in a store directory, each with a policy, and
    released over HTTP only against a fresh quote that meets it (API: docs/attestation.md).

    \b
    Example:
      occlum kbs add-secret --store kbs db --from-file pw.txt --mrenclave $(occlum print mrenclave)
      occlum print platform-root > root.pem
      occlum kbs serve --store kbs --listen 0.0.0.0:8443 --root-cert root.pem
    """


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UserError(f"--listen {value!r}: expected HOST:PORT, such as 127.0.0.1:8443")
    return host.strip("[]"), int(port)


@kbs.command("serve", context_settings=CONTEXT)
@click.option("--store", "store_dir", required=True, type=click.Path(path_type=Path))
@click.option("--listen", "listen", default="127.0.0.1:8443", show_default=True)
@click.option(
    "--root-cert", "roots", required=True, multiple=True, type=click.Path(path_type=Path),
    help="A trusted platform root (PEM, from `occlum print platform-root`); repeatable.",
)  # fmt: skip
def serve(store_dir: Path, listen: str, roots: tuple[Path, ...]) -> None:
    """Serve the secrets of STORE on HOST:PORT until interrupted. Prints the address it
    listens on (useful with port 0), then one line per decision."""
    from occlum.crypto.attest import AttestCryptoError, certificate_key
    from occlum.kbs.broker import Broker, KbsServer
    from occlum.kbs.store import SecretStore

    host, port = _listen(listen)
    pems = []
    for path in roots:
        pem = _read(path, "the root certificate")
        try:
            certificate_key(pem)
        except AttestCryptoError as e:
            raise UserError(f"{path} is not a platform root certificate: {e}")
        pems.append(pem)
    broker = Broker(SecretStore(store_dir), pems)

    def log(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    try:
        server = KbsServer((host, port), broker, log)
    except OSError as e:
        raise UserError(f"cannot listen on {listen}: {e.strerror}")

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # leaves serve_forever in this (the main) thread

    signal.signal(signal.SIGTERM, stop)
    log(f"listening on http://{host}:{server.server_port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("stopped")
    finally:
        server.server_close()


@kbs.command("add-secret", context_settings=CONTEXT)
@click.option("--store", "store_dir", required=True, type=click.Path(path_type=Path))
@click.argument("name")
@click.option("--from-file", "source", required=True, type=click.Path(path_type=Path))
@click.option("--mrenclave", help="Release only to this MRENCLAVE (64 hex digits).")
@click.option("--mrsigner", help="Release only to this MRSIGNER (64 hex digits).")
@click.option("--isv-prod-id", type=click.IntRange(0, 0xFFFF), help="Require this ISVPRODID.")
@click.option("--min-isv-svn", type=click.IntRange(0, 0xFFFF), help="Require ISVSVN >= N.")
@click.option("--allow-debug", is_flag=True, help="Release to debuggable enclaves too.")
def add_secret(
    store_dir: Path,
    name: str,
    source: Path,
    mrenclave: str | None,
    mrsigner: str | None,
    isv_prod_id: int | None,
    min_isv_svn: int | None,
    allow_debug: bool,
) -> None:
    """Store NAME (the bytes of --from-file) with its policy; the store is created on first
    use. An existing NAME is replaced."""
    from occlum.kbs.store import SecretPolicy, SecretStore, check_name

    check_name(name)
    enclave = _hex(mrenclave, "--mrenclave", 32)
    signer = _hex(mrsigner, "--mrsigner", 32)
    policy = SecretPolicy(
        mrenclave=None if enclave is None else enclave.hex(),
        mrsigner=None if signer is None else signer.hex(),
        isv_prod_id=isv_prod_id,
        min_isv_svn=min_isv_svn,
        allow_debug=allow_debug,
    )
    secret = _read(source, "the secret")
    SecretStore(store_dir, create=True).add(name, secret, policy)
    click.echo(f"stored {name} ({len(secret)} bytes): {policy.describe()}")


@kbs.command("list", context_settings=CONTEXT)
@click.option("--store", "store_dir", required=True, type=click.Path(path_type=Path))
def list_secrets(store_dir: Path) -> None:
    """The secrets of the store and their policies (never their values)."""
    from occlum.kbs.store import SecretStore

    store = SecretStore(store_dir)
    for name in store.names():
        click.echo(f"{name}  {store.policy(name).describe()}")
