"""Deterministic encryption of the read-only image: synthetic IVs over AES-256-CTR.

Owns how an encrypted image (:mod:`occlum.fs.image_format`, version 2) turns the user's image
key into its keys, and how a file's contents and the inode table are encrypted.  An image is
built once and must come out byte-identical from the same tree and key (its root hash is
measured), so its IVs cannot be random; they must not be counters either, or a rebuild with
one changed file would encrypt new plaintext under an old IV.  The recipe is the synthetic-IV
construction (SIV, as in RFC 5297, with HMAC-SHA256 as the PRF):

- ``iv = HMAC-SHA256(mac_key, u64le(len(name)) || name || plaintext)[:16]``, where ``name``
  says what is encrypted (a file's path in the image, or the inode table).  The IV is a
  pseudo-random function of everything encrypted under it, so two different plaintexts get the
  same IV only by a 2**-128 accident: no (key, IV) pair is ever reused for different data, and
  equal files at different paths are still different ciphertext.
- ``ciphertext = AES-256-CTR(enc_key, iv, plaintext)``: no expansion, so a file's blocks keep
  their 4 KiB alignment; block ``i`` of a file starts at counter ``iv + 256 * i`` and can be
  decrypted alone.

The IV of a file lives in its (encrypted) inode record, the inode table's IV in the image
header.  Integrity is not this module's job: the image's Merkle trees cover the stored
ciphertext and the measured root hash covers the header and the table.  The table still gets
the SIV check on decryption (:meth:`ImageCipher.open_table` recomputes its IV), which costs
nothing for one small blob.

Every key is derived with HKDF (:func:`occlum.crypto.kdf.derive_key`) under its own label, and
the header carries :attr:`ImageCipher.key_check`, one more derived value, so that a wrong key
is told apart from a damaged image before anything is decrypted.  Revealing it reveals nothing
about the other keys (HKDF outputs under distinct labels are independent).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from occlum.crypto.aead import IntegrityError
from occlum.crypto.kdf import derive_key

__all__ = [
    "IMAGE_KEY_SIZES",
    "IV_SIZE",
    "KEY_CHECK_SIZE",
    "ImageCipher",
    "IvHasher",
]

IV_SIZE = 16
KEY_CHECK_SIZE = 32
IMAGE_KEY_SIZES = (16, 32)

_LABEL = b"occlum-python image v2 "
_AES_BLOCKS_PER_BLOCK = 4096 // 16  # AES counter steps in one image block
_TABLE_NAME = b"\0inode table"  # no file path starts with a NUL byte

Buffer = bytes | bytearray | memoryview


class IvHasher:
    """The synthetic IV of one plaintext, fed in pieces (a file is streamed, not loaded)."""

    __slots__ = ("_mac",)

    def __init__(self, mac_key: bytes, name: bytes) -> None:
        self._mac = hmac.new(mac_key, struct.pack("<Q", len(name)) + name, hashlib.sha256)

    def update(self, data: Buffer) -> None:
        self._mac.update(data)

    def iv(self) -> bytes:
        return self._mac.digest()[:IV_SIZE]


class ImageCipher:
    """The keys of one encrypted image, derived from the user's image key (16 or 32 bytes).

    Raises ``ValueError`` for a key of another length.
    """

    __slots__ = ("_data_key", "_data_mac", "_table_key", "_table_mac", "key_check")

    def __init__(self, image_key: bytes) -> None:
        if len(image_key) not in IMAGE_KEY_SIZES:
            raise ValueError(f"an image key is 16 or 32 bytes, not {len(image_key)}")
        self.key_check = derive_key(image_key, _LABEL + b"key check", b"")
        self._data_key = derive_key(image_key, _LABEL + b"aes-ctr", b"data")
        self._data_mac = derive_key(image_key, _LABEL + b"siv", b"data")
        self._table_key = derive_key(image_key, _LABEL + b"aes-ctr", b"inode table")
        self._table_mac = derive_key(image_key, _LABEL + b"siv", b"inode table")

    # --- file contents --------------------------------------------------------------------

    def file_iv(self, name: bytes) -> IvHasher:
        """The IV hasher for the file at ``name`` (its path in the image): feed it the contents."""
        return IvHasher(self._data_mac, name)

    def block_cipher(self, iv: bytes, first_block: int) -> CipherContext:
        """An AES-CTR stream positioned at block ``first_block`` of the file whose IV is ``iv``.

        CTR encrypts and decrypts alike; feed it whole blocks from ``first_block`` on (the last
        block zero-padded), in order.
        """
        if len(iv) != IV_SIZE:
            raise ValueError(f"an IV is {IV_SIZE} bytes")
        start = (int.from_bytes(iv, "big") + first_block * _AES_BLOCKS_PER_BLOCK) % (1 << 128)
        counter = start.to_bytes(IV_SIZE, "big")
        return Cipher(algorithms.AES(self._data_key), modes.CTR(counter)).encryptor()

    # --- the inode table ------------------------------------------------------------------

    def seal_table(self, table: Buffer) -> tuple[bytes, bytes]:
        """``(iv, ciphertext)`` of the inode table; the same table always gives the same pair."""
        hasher = IvHasher(self._table_mac, _TABLE_NAME)
        hasher.update(table)
        iv = hasher.iv()
        return iv, self._table_crypt(iv, table)

    def open_table(self, iv: bytes, ciphertext: Buffer) -> bytes:
        """The inode table sealed with ``iv``, or :class:`IntegrityError` if it does not
        decrypt to the plaintext that IV was made from (another key, or changed bytes)."""
        if len(iv) != IV_SIZE:
            raise IntegrityError("inode table IV is malformed")
        table = self._table_crypt(iv, ciphertext)
        hasher = IvHasher(self._table_mac, _TABLE_NAME)
        hasher.update(table)
        if not hmac.compare_digest(hasher.iv(), iv):
            raise IntegrityError("inode table does not decrypt under this key")
        return table

    def _table_crypt(self, iv: bytes, data: Buffer) -> bytes:
        ctx = Cipher(algorithms.AES(self._table_key), modes.CTR(iv)).encryptor()
        return ctx.update(data) + ctx.finalize()
