"""``signer run``: the operator that attests every completed Tekton TaskRun and PipelineRun exactly once.

kopf watches the runs and owns retries; the handlers are plain functions over
:func:`signer.attest.attest`. The modules, from the pure core out to the edges:

* :mod:`.config` — Tekton Chains' ``chains-config`` keys (plus provgate's ``provgate.*``) to an
  :class:`~signer.operator.config.OperatorConfig`; one small factory per signing backend.
* :mod:`.chains` — Chains' annotations, retries and finalizers as pure functions of a run.
* :mod:`.credentials` — registry credentials from a run's ServiceAccount and pull secrets.
* :mod:`.reconcile` — what to do with one run (attest, wait, mark failed), over an API protocol.
* :mod:`.kube`, :mod:`.lease`, :mod:`.source` — the Kubernetes API, leader election, the config watcher.
* :mod:`.queue`, :mod:`.metrics`, :mod:`.registration`, :mod:`.handlers`, :mod:`.main` — the rest of
  the process: bounded workers with new runs first, Prometheus metrics, SPIRE entries, kopf wiring.
"""
