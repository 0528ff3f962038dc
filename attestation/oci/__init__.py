"""OCI storage of attestations: cosign's tag layout, OCI 1.1 referrers, and the registry client."""
