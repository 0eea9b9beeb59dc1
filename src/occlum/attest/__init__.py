"""Libraries for programs and relying parties built on attestation: RA-TLS (``ratls`` runs
inside an instance, ``verify`` on the verifying side)."""
