"""What the instance layer hands the kernel to boot a LibOS and run one program (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True)
class MountSpec:
    """One entry of the mount table, already validated and with host paths made absolute.

    ``fs_type`` is one of ``hostfs``, ``sefs``, ``ramfs``, ``devfs``, ``procfs`` (the root is
    given by ``RunSpec.root_image``). ``source`` is the host directory of ``hostfs`` and the
    storage directory of ``sefs``, else ``None``.
    """

    target: str
    fs_type: str
    source: str | None = None
    readonly: bool = False
    key: bytes | None = None  # sefs: the volume key (already derived or unsealed)
    temporary: bool = False  # sefs: contents discarded at exit
    mac_only: bool = False  # sefs: integrity only, no encryption


@dataclass(slots=True, frozen=True)
class EnclaveSpec:
    """The running enclave's identity, from its verified SIGSTRUCT, and the platform key it
    runs on: what ``/dev/sgx`` reports, derives keys from and quotes."""

    mrenclave: bytes
    mrsigner: bytes
    isv_prod_id: int
    isv_svn: int
    debuggable: bool
    platform_key_path: str


@dataclass(slots=True)
class DebugStop:
    """A debuggable LibOS: every exec of a program tells the kernel the auxv its program was
    given, for a debugger's view of it (``occlum gdb``, also ``--pid`` in a started instance).
    With a ``gate_fd`` (``occlum gdb PROGRAM``), the first program waits before its first
    instruction, reading one byte from that pipe (the debugger writes it once it has
    attached), and its host pid is written to ``pid_fd`` (and kept in ``host_pid``)."""

    pid_fd: int = -1
    gate_fd: int = -1
    host_pid: int = 0


@dataclass(slots=True, frozen=True)
class RunSpec:
    """Everything ``occlum run`` needs: the built root, the mounts, the program and its environment."""

    instance_dir: str
    root_dir: str  # host directory holding the staged root (used when there is no root image)
    argv: tuple[str, ...]  # argv[0] is the absolute path of the program inside the LibOS
    env: tuple[tuple[str, str], ...]
    mounts: tuple[MountSpec, ...] = ()
    cwd: str = "/"
    umask: int = 0o022
    hostname: str = "occlum"
    # "host": the host's network; "loopback": a network of its own with loopback only;
    # "none": no network at all (not even loopback)
    network: str = "host"
    max_threads: int = 64
    user_space_size: int = 256 << 20
    default_stack_size: int = 8 << 20
    default_heap_size: int = 32 << 20
    log_level: str = "warn"
    root_image: str | None = None  # the integrity-only image mounted as the root
    root_hash: str | None = None  # its measured root hash (hex)
    # the writable encrypted layer over the image (Occlum's run/mount/__ROOT), if the root is a
    # unionfs: its storage directory and volume key
    root_upper: str | None = None
    root_upper_key: bytes | None = None
    # the init stage: the initfs image and its measured hash, and init's argv; None: the root
    # is mounted directly, with no init stage
    init_image: str | None = None
    init_hash: str | None = None
    init_argv: tuple[str, ...] = ("/bin/init",)
    # the key file given to `occlum run --image-key` (its text), shown to init as /dev/image_key
    user_image_key: bytes | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # `occlum run --summary`: count the calls served (and time them) for the program's tree
    summary: bool = False
    # `occlum doctor`: count the calls too, and measure the peaks of the resources the limits
    # bound (address space, processes and threads, main stack) with the limits raised to these
    # values (0: the configured one), so that what the program needs is measured rather than
    # where it was cut off; the program still sees the configured sizes (sysinfo, meminfo)
    diagnose: bool = False
    raised_address_space: int = 0
    raised_threads: int = 0
    # None: no measured enclave (a LibOS booted by tests without `occlum build`): /dev/sgx
    # answers ENODEV
    enclave: EnclaveSpec | None = None
    debug: DebugStop | None = None
