"""Wire formats shared by the signer and the gate: in-toto statements, DSSE envelopes, keys,
OCI attestation layouts and SPIFFE X.509 helpers."""
