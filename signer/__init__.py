"""The signer: Tekton runs -> signed SLSA provenance (see :mod:`signer.attest`)."""

import logging

# A library logs, it does not print: silent unless the application (the CLI with -v, the operator)
# configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
