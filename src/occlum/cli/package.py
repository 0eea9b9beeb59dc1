"""``occlum package``: a built instance as an archive to run elsewhere, or as an OCI image."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from occlum.cli._errors import warn
from occlum.cli._terminal import RichProgress
from occlum.instance.layout import Instance
from occlum.instance.package import (
    OCI_INSTANCE_DIR,
    PackageReport,
    write_k8s_manifest,
    write_oci_layout,
    write_package,
)

CONTEXT = {"help_option_names": ["-h", "--help"]}
# below these an archive is written before a bar would be worth drawing
PROGRESS_MIN_BYTES = 32 << 20
PROGRESS_MIN_FILES = 2000
DEFAULT_PLATFORM_DIR = "/var/lib/occlum/platform"


@click.command(
    context_settings=CONTEXT, short_help="Package the built instance as an archive or OCI image."
)
@click.argument("name", required=False, type=click.Path(path_type=Path))
@click.option(
    "--debug", is_flag=True, help="Package a debuggable enclave (metadata.debuggable true)."
)
@click.option(
    "--oci",
    "oci_dir",
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Write an OCI image layout to DIR (new or empty) instead of an archive.",
)
@click.option(
    "--tag", default="latest", show_default=True, help="With --oci: the image's tag in DIR."
)
@click.option(
    "--cmd",
    metavar="COMMAND",
    help="With --oci: the image's command, e.g. '/bin/hello --verbose' (default: the first "
    "entry point that is a program, else none).",
)
@click.option(
    "--base",
    metavar="LAYOUT[:TAG]",
    help="With --oci: put the instance's layer on top of this OCI image (one that has "
    "`occlum` on PATH).",
)
@click.option(
    "--no-runtime",
    is_flag=True,
    help="With --oci and no --base: the instance's layer only, no Python and no LibOS (for a "
    "base image of your own).",
)
@click.option(
    "--seccomp-profile",
    "seccomp_file",
    metavar="FILE",
    type=click.Path(path_type=Path),
    help="With --oci: also write the container's seccomp profile to FILE (podman run "
    "--security-opt seccomp=FILE; see docs/deploy.md).",
)
@click.option(
    "--k8s",
    "k8s_file",
    metavar="FILE",
    type=click.Path(path_type=Path),
    help="Write a Kubernetes Deployment for the image to FILE; with or without --oci.",
)
@click.option(
    "--image",
    metavar="REF",
    help="With --k8s: the image the pods run (default localhost/NAME:TAG).",
)
@click.option(
    "--port",
    type=int,
    metavar="N",
    help="With --k8s: the TCP port the program serves (published, and the readiness probe).",
)
@click.option(
    "--platform-dir",
    metavar="DIR",
    default=DEFAULT_PLATFORM_DIR,
    show_default=True,
    help="With --k8s: the node's platform directory (key and counters), mounted into the pod.",
)
@click.option(
    "--replicas",
    type=int,
    default=1,
    show_default=True,
    metavar="N",
    help="With --k8s: N instances, each a Deployment with its own volume (NAME-0 ...) and "
    "its port published as PORT+i.",
)
@click.pass_context
def package(
    ctx: click.Context,
    name: Path | None,
    debug: bool,
    oci_dir: Path | None,
    tag: str,
    cmd: str | None,
    base: str | None,
    no_runtime: bool,
    seccomp_file: Path | None,
    k8s_file: Path | None,
    image: str | None,
    port: int | None,
    platform_dir: str,
    replicas: int,
) -> None:
    """Package a built instance to run on another machine: NAME (default: the instance
    directory's name + .tar.gz, in the current directory; .tar.gz is added if missing) holds
    one directory named after the instance with what `occlum run` needs (Occlum.json, the
    images, the signed measurement) and no run-time state (run/, SEFS volumes) or signing key.
    The target needs the same Occlum for Python; it seals its volumes with its own platform
    key. See docs/package.md.

    The instance must be built from its current Occlum.json. A debuggable enclave (the
    default of Occlum.json) is refused unless --debug is given.

    With --oci DIR, write an OCI image layout instead, that a container engine runs as it is
    (`podman pull oci:DIR:TAG`, no registry needed): a runtime layer (this Python, its libraries
    and the LibOS, reproducible and shared by every image of one LibOS) under one layer with
    the instance at /occlum_instance; Entrypoint `occlum-container`, Cmd the program. The
    platform key comes from the host's mount at /var/lib/occlum/platform. See docs/deploy.md.
    --no-runtime writes the instance's layer alone (Entrypoint `occlum --instance-dir
    /occlum_instance run`), for a base image that has `occlum` of the same version on PATH;
    --base puts it on such a base from another OCI layout.

    With --k8s FILE, write a Kubernetes Deployment for the image: the least privilege, the
    platform directory of the node, a claim for the SEFS volumes, memory from Occlum.json,
    liveness and readiness probes.

    \b
    Example:
      occlum package                       # ./myapp.tar.gz
      tar xzf myapp.tar.gz && cd myapp && occlum run /bin/hello
      occlum package --oci oci --cmd /bin/hello --seccomp-profile occlum-seccomp.json
      podman pull oci:oci:latest           # then podman run ... (docs/deploy.md)
      occlum package --k8s app.yaml --port 8080 --image localhost/app:1.0
    """
    _check_usage(name, oci_dir, k8s_file, tag, cmd, base, no_runtime, seccomp_file, image, port,
                 platform_dir, replicas)  # fmt: skip
    root = ctx.find_root()
    inst = Instance.at(root.params.get("instance_dir") or ".")
    if oci_dir is not None or k8s_file is None:
        progress = RichProgress(
            "packaging", min_bytes=PROGRESS_MIN_BYTES, min_files=PROGRESS_MIN_FILES
        )
        try:
            if oci_dir is None:
                report = write_package(inst, name, debug=debug, progress=progress)
            else:
                report = write_oci_layout(
                    inst, oci_dir, tag=tag, cmd=cmd, base=base, runtime=not no_runtime,
                    debug=debug, progress=progress,
                )  # fmt: skip
        finally:
            progress.stop()
        _print_report(inst, report, oci=oci_dir is not None)
    if k8s_file is not None:
        manifest = write_k8s_manifest(
            inst, k8s_file, image=image, tag=tag, cmd=cmd, port=port,
            platform_dir=platform_dir, replicas=replicas, debug=debug,
        )  # fmt: skip
        if oci_dir is None:
            for w in manifest.warnings:
                warn("occlum", w)
        click.echo(
            f"Wrote the Kubernetes manifest {manifest.path} for the image {manifest.tag} "
            "(kubectl apply -f FILE, or podman kube play FILE)"
        )
    if seccomp_file is not None:
        from occlum.instance.deploy import write_seccomp_profile

        write_seccomp_profile(seccomp_file)
        click.echo(f"Wrote the container's seccomp profile {seccomp_file}")


def _check_usage(
    name: Path | None, oci_dir: Path | None, k8s_file: Path | None, tag: str, cmd: str | None,
    base: str | None, no_runtime: bool, seccomp_file: Path | None, image: str | None,
    port: int | None, platform_dir: str, replicas: int,
) -> None:  # fmt: skip
    if name is not None and (oci_dir is not None or k8s_file is not None):
        raise click.UsageError("give either NAME or --oci DIR / --k8s FILE, not both")
    for option, given in (("--base", base is not None), ("--no-runtime", no_runtime)):
        if given and oci_dir is None:
            raise click.UsageError(f"{option} only applies to --oci DIR")
    for option, given in (
        ("--image", image is not None), ("--port", port is not None),
        ("--platform-dir", platform_dir != DEFAULT_PLATFORM_DIR), ("--replicas", replicas != 1),
    ):  # fmt: skip
        if given and k8s_file is None:
            raise click.UsageError(f"{option} only applies to --k8s FILE")
    for option, given in (
        ("--tag", tag != "latest"), ("--cmd", cmd is not None),
        ("--seccomp-profile", seccomp_file is not None),
    ):  # fmt: skip
        if given and oci_dir is None and k8s_file is None:
            raise click.UsageError(f"{option} only applies to --oci DIR or --k8s FILE")
    if base is not None and no_runtime:
        raise click.UsageError("--no-runtime and --base exclude each other (a base has no runtime)")


def _print_report(inst: Instance, report: PackageReport, *, oci: bool) -> None:
    for w in report.warnings:
        warn("occlum", w)
    if report.debuggable:
        warn("occlum", "the packaged enclave is debuggable (metadata.debuggable is true)")
    mib = report.bytes / (1 << 20)
    if not oci:
        click.echo(f"Packaged {inst.path} into {report.path}: {report.files} files, {mib:.1f} MiB")
    else:
        click.echo(
            f"Wrote the OCI image {report.path}:{report.tag} ({report.files} files, "
            f"{mib:.1f} MiB, instance at {OCI_INSTANCE_DIR}), manifest {report.manifest_digest}"
        )
        click.echo(f"Entrypoint: {shlex.join(report.entrypoint)}")
        if report.cmd:
            click.echo(f"Cmd: {shlex.join(report.cmd)}")
        else:
            click.echo("Cmd: none (give the program when running the image, or use --cmd)")
    click.echo(f"MRENCLAVE {report.mrenclave}")
