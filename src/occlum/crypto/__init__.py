"""Cryptography of the LibOS: the only package that imports ``cryptography``.

File systems and the enclave layer call small, safe recipes from here (seal a block, open a
block, derive a key, hash a tree); none of them touches an AEAD primitive directly.
"""
