"""Occlum for Python: a library OS that runs unmodified Linux x86-64 programs in a protected enclave."""

from __future__ import annotations

__version__ = "0.1.0"
