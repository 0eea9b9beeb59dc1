"""Where the LibOS knowingly differs from Linux, and why: the list ``docs/syscalls.md`` ends
with (``catalogue.markdown``). Each entry names the calls it concerns, what a program sees, and
the reason it stays; a unit test checks that every call named is a real one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deviation:
    calls: tuple[str, ...]
    what: str  # what a program sees, against Linux
    why: str  # why it stays


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        ("seccomp", "prctl"),
        "a program's own seccomp filter is accepted without PR_SET_NO_NEW_PRIVS, whoever "
        "installs it, and PR_GET_NO_NEW_PRIVS says 1",
        "the LibOS set no_new_privs on every process before its own filter; it cannot be "
        "cleared, so Linux's EACCES for an unprivileged caller without it never arises",
    ),
    Deviation(
        ("execve", "execveat"),
        "set-user-id and set-group-id bits and file capabilities are not honoured: a user "
        "running su, passwd or ping gets no privilege, and AT_SECURE is 0",
        "no_new_privs (above), as on Linux under it; the LibOS's root can switch users itself",
    ),
    Deviation(
        ("open", "openat", "openat2", "creat"),
        "a regular file's set-user-id bit (and set-group-id with group exec) is cleared when a "
        "writer without CAP_FSETID opens it for writing; Linux clears them at the first write",
        "writes to LibOS files run natively, out of the LibOS's sight: the bits go earlier "
        "than on Linux, never later",
    ),
    Deviation(
        ("capget", "capset", "prctl"),
        "root holds only the capabilities whose checks the LibOS makes (docs/internals.md, "
        "Credentials); CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_MKNOD, CAP_SYS_PTRACE and the "
        "others are in no set, and the ambient set is always empty (PR_CAP_AMBIENT is native)",
        "granting them would need host privilege; a program learns what it lacks before trying",
    ),
    Deviation(
        (
            "shmget",
            "shmctl",
            "semget",
            "semctl",
            "msgget",
            "msgctl",
            "prlimit64",
            "ioprio_set",
            "sched_setaffinity",
        ),
        "permissions are checked by the host kernel against the one host user every process "
        "of the instance is: a process that switched users inside still reaches root's "
        "System V IPC objects, limits and priorities",
        "they run natively, for speed, in the instance's own IPC and PID namespaces: nothing "
        "outside the instance is reachable",
    ),
    Deviation(
        ("getsockopt",),
        "SO_PEERCRED gives the peer's LibOS ids when the call is made, not when it connected; "
        "a peer that has exited since gives pid 0 and ids -1",
        "the kernel records the peer's host ids, which every process of the instance shares; "
        "the LibOS asks it which process the peer is and reports that process's ids now",
    ),
    Deviation(
        ("open", "openat", "mkdir", "mknod", "chown", "fchown"),
        "on a hostfs mount, a file a user inside creates belongs to the host user running "
        "occlum, and chown cannot give a host file to another owner (EPERM)",
        "the files are the host's: giving one to a host uid would hand it to whoever has that "
        "uid on the host (docs/configuration.md, hostfs)",
    ),
    Deviation(
        ("kill", "tgkill", "rt_sigqueueinfo"),
        "a signal to a process group or to -1 of which the sender may signal only some "
        "members reaches those with si_pid 0",
        "the supervisor sends it for the caller; the kernel would send it to all of them",
    ),
    Deviation(
        ("clock_settime", "settimeofday", "adjtimex", "clock_adjtime"),
        "setting the clock fails with EPERM, even for root",
        "it is the host's clock; there is no time namespace for CLOCK_REALTIME",
    ),
    Deviation(
        ("ioctl",),
        "TIOCSTI fails with EIO and TIOCLINUX with EPERM on every terminal, even for root",
        "as Linux with dev.tty.legacy_tiocsti=0: typing into the user's terminal would run "
        "commands outside the instance (docs/internals.md, Terminals)",
    ),
    Deviation(
        ("open", "openat"),
        "opening a pseudo-terminal slave without O_NOCTTY does not make it the controlling "
        "terminal of a session leader that has none; programs that want one call TIOCSCTTY",
        "the supervisor makes the open; login_tty, forkpty, script and expect call TIOCSCTTY",
    ),
    Deviation(
        ("fcntl",),
        "F_CREATED_QUERY fails with EINVAL, as before Linux 6.12",
        "the host object behind a LibOS file is the LibOS's, never created by the program's open",
    ),
    Deviation(
        ("sendmsg", "sendmmsg"),
        "a destination address naming a Unix socket path is not resolved in the LibOS: it "
        "reaches a socket bound at that same text, or one a connect or sendto made reachable",
        "the address is inside the message header, out of the filter's sight; they stay native",
    ),
    Deviation(
        ("ioctl",),
        'with "network": "host", the network device requests made on a Unix socket '
        "that pass a pointer on (SIOCETHTOOL, SIOCGMIIPHY, the bridge and bonding ones) see "
        "the instance's own network namespace, which holds only a loopback interface that "
        "is down; the ones that read a device's state through a struct ifreq (SIOCGIFINDEX, "
        "SIOCGIFNAME, SIOCGIFFLAGS, ...) and SIOCGIFCONF see the host's, as on an IPv4 socket",
        "a socket's requests act on the namespace it was made in, and programs make their "
        "Unix sockets in the instance's own, where their abstract names are private; the "
        "supervisor makes the reading requests again on a Unix socket of the host's",
    ),
    Deviation(
        ("bind", "connect", "sendto"),
        "an abstract name given with a Unix socket made outside the instance (inherited from "
        "occlum run's caller, or passed in by a host program) fails with EPERM",
        "such a socket belongs to the host's network namespace, whose abstract names are the "
        "host's; the instance's are in its own",
    ),
    Deviation(
        ("epoll_ctl",),
        "epoll_ctl on an O_PATH descriptor of a LibOS file is not refused with EBADF",
        "epoll_ctl is native and the descriptor is a host object opened without O_PATH",
    ),
    Deviation(
        ("write", "fallocate", "mmap"),
        "ramfs and SEFS contents past user_space_size end the writer "
        "with the out-of-memory killer, not ENOSPC",
        "their pages count towards the instance's memory cgroup, which has no ENOSPC",
    ),
    Deviation(
        ("clone3",),
        "clone3 fails with ENOSYS; C libraries then use clone",
        "its flags are in memory, out of the filter's sight; clone's can be checked",
    ),
)
