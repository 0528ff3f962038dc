"""SPIRE support for the signer: verify SPIRE-signed TaskRun results, register TaskRun identities."""
