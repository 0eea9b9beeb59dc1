"""The simulated enclave: measurement (MRENCLAVE), signer identity (MRSIGNER), sealing keys.

There is no SGX CPU: these modules compute what SGX would, rooted in a platform key file
instead of the CPU (DESIGN §2, docs/enclave.md).

* ``measure``     the LibOS digest and MRENCLAVE, an ECREATE/EEXTEND-style hash log
* ``sigstruct``   the signed SIGSTRUCT document, MRSIGNER, sign and verify
* ``keys``        the platform key, sealing keys (MRENCLAVE/MRSIGNER policy), image key files
* ``build_seal``  ``occlum build``'s last step (measure, sign, write build/sigstruct.json) and
                  ``occlum run``'s first check (``verify_build``, our EINIT)
"""
