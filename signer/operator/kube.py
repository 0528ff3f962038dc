"""The operator's own Kubernetes API calls, through the official client, each paced by one token bucket
(``--kube-api-qps`` / ``--kube-api-burst``).

kopf watches the runs with a client of its own; everything the handlers read or write goes through
:class:`KubeApi`: fresh reads of a run before it is attested, its child TaskRuns, the ServiceAccount and
Secrets that hold registry credentials, the run's pod (for SPIRE registration), server-side apply of
the Chains annotations, Events, the configuration and the leader Lease. Objects come back as plain
dicts (JSON as the API server sent it); a missing object is None.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Mapping
from typing import Any, cast

from attestation.errors import ProvgateError, TransientError
from signer.operator.chains import FIELD_MANAGER
from signer.operator.queue import TokenBucket

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0
COMPONENT = "provgate-signer"
MAX_EVENT_MESSAGE = 1024
PLURALS = {"TaskRun": "taskruns", "PipelineRun": "pipelineruns"}
_NOT_FOUND = frozenset({404})
_CONFLICT = frozenset({409})  # optimistic concurrency lost: someone else wrote first


class KubeApiError(ProvgateError):
    """The API server refused a request (other than not found)."""


class KubeApiUnavailable(KubeApiError, TransientError):
    """The API server could not be reached, or answered 429/5xx."""


def _error(err: Exception, what: str) -> KubeApiError:
    from kubernetes.client.exceptions import ApiException

    if isinstance(err, ApiException):
        status = err.status or 0
        try:
            message = json.loads(err.body or "{}").get("message") or err.reason
        except (ValueError, AttributeError):
            message = err.reason
        text = f"{what}: {status} {' '.join(str(message).split())}"
        if status == 429 or status >= 500 or status == 0:
            return KubeApiUnavailable(text)
        return KubeApiError(text)
    return KubeApiUnavailable(f"{what}: {type(err).__name__}: {' '.join(str(err).split())[:300]}")


def load_api_client(pool_size: int = 16) -> Any:
    """An ``ApiClient`` configured in cluster (the pod's ServiceAccount) or from ``KUBECONFIG`` /
    ``~/.kube/config`` like kubectl."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        config.load_kube_config(config_file=path.split(os.pathsep)[0], client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class KubeApi:
    """The calls the operator makes, paced by ``limiter``; ``identity`` names this replica in Events."""

    def __init__(self, api_client: Any, limiter: TokenBucket | None = None, *, identity: str = "") -> None:
        from kubernetes import client

        self.api_client = api_client
        self.limiter = limiter or TokenBucket(0, 1)
        self.identity = identity
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._coordination = client.CoordinationV1Api(api_client)

    # -- plumbing ----------------------------------------------------------------------------------

    def _call(
        self, what: str, fn: Any, *args: Any, none_on: frozenset[int] = _NOT_FOUND, **kwargs: Any
    ) -> Any:
        """``fn``'s answer, or None when the API server answers one of the statuses in ``none_on``."""
        from kubernetes.client.exceptions import ApiException

        self.limiter.acquire()
        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as err:
            if err.status in none_on:
                return None
            raise _error(err, what) from None
        except Exception as err:  # urllib3/ssl/socket: the API server is not there
            raise _error(err, what) from None

    def _raw(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """A core API read as the JSON the server sent (no model objects: faster, and dicts like the rest)."""
        response = self._call(what, fn, *args, _preload_content=False, **kwargs)
        if response is None:
            return None
        data = response.data
        doc: dict[str, Any] = json.loads(data)
        return doc

    # -- runs --------------------------------------------------------------------------------------

    def get_run(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj: dict[str, Any] | None = self._call(
            f"get {kind} {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            "tekton.dev",
            "v1",
            namespace,
            PLURALS[kind],
            name,
        )
        return obj

    def apply_run(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of ``body`` (annotations, finalizers) under the operator's field manager."""
        meta = body["metadata"]
        kind = str(body["kind"])
        obj: dict[str, Any] | None = self._call(
            f"apply annotations to {kind} {meta['namespace']}/{meta['name']}",
            self._custom.patch_namespaced_custom_object,
            "tekton.dev",
            "v1",
            meta["namespace"],
            PLURALS[kind],
            meta["name"],
            dict(body),
            field_manager=FIELD_MANAGER,
            force=True,
            none_on=frozenset(),
            _content_type="application/apply-patch+yaml",
        )
        return obj or {}

    # -- credentials, pods ---------------------------------------------------------------------------

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._raw(
            f"get ServiceAccount {namespace}/{name}",
            self._core.read_namespaced_service_account,
            name,
            namespace,
        )

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._raw(f"get Secret {namespace}/{name}", self._core.read_namespaced_secret, name, namespace)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._raw(f"get Pod {namespace}/{name}", self._core.read_namespaced_pod, name, namespace)

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._raw(
            f"get ConfigMap {namespace}/{name}", self._core.read_namespaced_config_map, name, namespace
        )

    # -- events --------------------------------------------------------------------------------------

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on ``obj``; never raises (an Event lost must not fail an attestation)."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = " ".join(message.split())
        if len(text) > MAX_EVENT_MESSAGE:
            text = text[: MAX_EVENT_MESSAGE - 3] + "..."
        event = {
            "metadata": {"generateName": f"{meta.get('name', 'run')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": text,
            "type": type_,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.identity[:128] or COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._call(
                f"post Event {reason} on {obj.get('kind')} {namespace}/{meta.get('name')}",
                self._core.create_namespaced_event,
                namespace,
                event,
                none_on=frozenset(),
                _preload_content=False,
            )
        except KubeApiError as err:
            log.warning("could not post an Event: %s", err)

    # -- leases --------------------------------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._raw(
            f"get Lease {namespace}/{name}", self._coordination.read_namespaced_lease, name, namespace
        )

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """None when someone else created it first (409)."""
        return self._raw(
            f"create Lease {namespace}/{body['metadata']['name']}",
            self._coordination.create_namespaced_lease,
            namespace,
            cast(Any, dict(body)),
            none_on=_CONFLICT,
        )

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """None when the Lease changed since it was read (409: optimistic concurrency lost)."""
        return self._raw(
            f"update Lease {namespace}/{name}",
            self._coordination.replace_namespaced_lease,
            name,
            namespace,
            cast(Any, dict(body)),
            none_on=_CONFLICT,
        )
