"""The simulated enclave: measurement (MRENCLAVE), signer identity (MRSIGNER), sealing keys."""
