"""``occlum verify-quote``: check a DCAP-layout quote made by ``/dev/sgx`` against a platform
root and a policy, and print the enclave's identity it carries."""

from __future__ import annotations

from pathlib import Path

import click

from occlum.errors import UserError

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _hex(value: str | None, option: str, size: int | None) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise UserError(f"{option} {value!r} is not hex")
    if size is not None and len(raw) != size:
        raise UserError(f"{option} must be {size} bytes ({2 * size} hex digits), not {len(raw)}")
    return raw


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a directory")
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}")


def trusted_root(root_cert: Path | None) -> bytes:
    """The root certificate a quote must chain to: the file given, else this machine's
    platform root (which must exist already: verifying creates no platform)."""
    if root_cert is not None:
        return _read(root_cert, "the root certificate")
    from occlum.enclave.platform_attest import load_attestation_platform

    return load_attestation_platform(create=False).root_pem


@click.command("verify-quote", context_settings=CONTEXT, short_help="Verify an enclave's quote.")
@click.argument("quote_file", type=click.Path(path_type=Path, dir_okay=True))
@click.option("--mrenclave", help="Require this MRENCLAVE (64 hex digits).")
@click.option("--mrsigner", help="Require this MRSIGNER (64 hex digits).")
@click.option("--isv-prod-id", type=click.IntRange(0, 0xFFFF), help="Require this ISVPRODID.")
@click.option("--min-isv-svn", type=click.IntRange(0, 0xFFFF), help="Require ISVSVN >= N.")
@click.option("--reject-debug", is_flag=True, help="Refuse a debuggable enclave.")
@click.option("--report-data", help="Require the report data to start with these bytes (hex).")
@click.option(
    "--root-cert",
    type=click.Path(path_type=Path),
    help="The platform root to trust (PEM, from `occlum print platform-root`); default: "
    "this machine's.",
)
def verify_quote(
    quote_file: Path,
    mrenclave: str | None,
    mrsigner: str | None,
    isv_prod_id: int | None,
    min_isv_svn: int | None,
    reject_debug: bool,
    report_data: str | None,
    root_cert: Path | None,
) -> None:
    """Verify QUOTE_FILE, a quote made inside an instance with /dev/sgx
    (SGXIOC_GEN_DCAP_QUOTE): its certificate chain up to the platform root, the quoting
    enclave's report and signature, then the policy the options give. Prints the enclave's
    identity and exits 0, or prints the check that failed and exits 1.

    \b
    Example:
      occlum verify-quote quote.bin --mrenclave $(occlum print mrenclave)
    """
    from occlum.enclave.quote import QuoteError, QuotePolicy
    from occlum.enclave.quote import verify_quote as verify

    policy = QuotePolicy(
        trusted_root=trusted_root(root_cert),
        mrenclave=_hex(mrenclave, "--mrenclave", 32),
        mrsigner=_hex(mrsigner, "--mrsigner", 32),
        isv_prod_id=isv_prod_id,
        min_isv_svn=min_isv_svn,
        allow_debug=not reject_debug,
        report_data=_hex(report_data, "--report-data", None),
    )
    if policy.report_data is not None and len(policy.report_data) > 64:
        raise UserError("--report-data is at most 64 bytes")
    quote = _read(quote_file, "the quote")
    try:
        body = verify(quote, policy)
    except QuoteError as e:
        raise UserError(f"{quote_file}: quote refused: {e}")
    click.echo(f"MRENCLAVE   {body.mrenclave.hex()}")
    click.echo(f"MRSIGNER    {body.mrsigner.hex()}")
    click.echo(f"ISVPRODID   {body.isv_prod_id}")
    click.echo(f"ISVSVN      {body.isv_svn}")
    click.echo(f"DEBUG       {'yes' if body.debug else 'no'}")
    click.echo(f"REPORTDATA  {body.report_data.hex()}")
