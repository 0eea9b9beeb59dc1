"""The key broker: secrets kept encrypted with a release policy, handed out over HTTP only to
an enclave whose fresh quote meets that policy (``occlum kbs``; the API is in
docs/attestation.md)."""
