"""Reading and writing a LibOS file's contents through its host descriptor, as a program
would with the descriptor the LibOS donates (for the file system unit tests)."""

from __future__ import annotations

import os

from occlum.vfs.inode import Inode


def write(inode: Inode, data: bytes | bytearray, off: int = 0) -> None:
    fd = inode.open_host_fd(os.O_RDWR)
    try:
        os.pwrite(fd, data, off)
    finally:
        os.close(fd)


def read(inode: Inode) -> bytes:
    """The whole contents."""
    fd = inode.open_host_fd(os.O_RDONLY)
    try:
        out = b""
        while chunk := os.read(fd, 1 << 20):
            out += chunk
        return out
    finally:
        os.close(fd)
