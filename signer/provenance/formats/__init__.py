"""One module per Tekton Chains provenance format, named after the format as Chains names it.

``slsa_v1`` is Chains' ``slsa/v1`` (alias ``in-toto``): a SLSA **v0.2** predicate. ``slsa_v2alpha3`` and
``slsa_v2alpha4`` are SLSA **v1.0**; both build on :mod:`signer.provenance.slsa_v1_0_predicate`.
"""
