"""A real Kubernetes API server for the tests: ``kube-apiserver`` and ``etcd`` on loopback, Tekton's CRDs.

* ``kube``: a :class:`KubeCluster`, one per pytest(-xdist) worker session (about 5 s to start: etcd,
  the API server, Tekton's eight CRDs). Its own CA and serving certificate, static-token
  authentication, RBAC authorization. Nothing else runs: no controller-manager (Deployments make no
  Pods, deleted namespaces stay ``Terminating``), no scheduler or kubelet (Pods stay ``Pending``), no
  Tekton controller or webhook (tests complete runs by writing their status, see ``tests.infra.tekton``).
* ``kube_namespace``: a fresh namespace for one test. It is not deleted afterwards: without a
  controller-manager a deleted namespace keeps its objects anyway.

Import them into a suite's conftest: ``from tests.infra.kube import kube, kube_namespace``. Clients:
``kube.api`` (the admin's ``kubernetes.client.ApiClient``), ``kube.client(token)`` for anyone else;
``kube.user_token`` is a user that only has what the API server grants every authenticated user, and
``kube.service_account_token(namespace, name)`` mints a token for a ServiceAccount, so RBAC can be
exercised as a deployment would run (bind a Role to ``system:serviceaccount:NAMESPACE:NAME``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.infra import free_port, require_binary, require_data, stop
from tests.infra.tls import make_ca, make_server_cert

# Written into the `kubernetes` Service's endpoints and never contacted; the API server refuses a
# loopback address there and exits on a host without a default route if none is given. TEST-NET-1.
ADVERTISE_ADDRESS = "192.0.2.10"
START_TIMEOUT = 90.0  # a loaded 2-core machine; ready in ~3 s when idle
ADMIN = "provgate-admin"
USER = "provgate-user"
CRDS = {"group": "apiextensions.k8s.io", "version": "v1", "plural": "customresourcedefinitions"}

T = TypeVar("T")


@dataclass
class KubeCluster:
    url: str  # https://127.0.0.1:PORT
    ca_file: Path  # the CA of the API server's serving certificate
    admin_token: str  # user provgate-admin in group system:masters
    user_token: str  # user provgate-user: no role beyond what every authenticated user has
    kubeconfig: Path  # the admin's, JSON
    workdir: Path
    log_files: dict[str, Path]
    _api: Any = field(default=None, repr=False)

    @property
    def api(self) -> Any:
        """The admin's ``kubernetes.client.ApiClient`` (shared; create more with :meth:`client`)."""
        if self._api is None:
            self._api = self.client()
        return self._api

    def client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for ``token`` (the admin's by default), from a kubeconfig."""
        from kubernetes import config

        path = self.kubeconfig if token is None else self.write_kubeconfig(token)
        return config.new_client_from_config(config_file=str(path))

    def write_kubeconfig(self, token: str, path: Path | None = None, namespace: str = "default") -> Path:
        """A kubeconfig (JSON) that authenticates with ``token``: for a process under test (KUBECONFIG)."""
        if path is None:
            path = self.workdir / f"kubeconfig-{secrets.token_hex(4)}.json"
        path.write_text(json.dumps(kubeconfig(self.url, self.ca_file, token, namespace)))
        path.chmod(0o600)
        return path

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A token for ServiceAccount ``namespace/name`` (created if missing), via the TokenRequest API."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.api)
        try:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        except ApiException as err:
            if err.status != 409:
                raise
        request = {"spec": {"audiences": [], "expirationSeconds": seconds}}
        return core.create_namespaced_service_account_token(name, namespace, request).status.token

    def create_namespace(self, prefix: str = "t") -> str:
        """A new namespace named ``PREFIX-<random>`` (a DNS label: prefix cut to fit, lower-cased)."""
        from kubernetes import client

        name = unique_name(prefix)
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": name}})
        return name

    def log_tail(self, name: str, size: int = 3000) -> str:
        return _tail(self.log_files[name], size)


def kubeconfig(url: str, ca_file: Path, token: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "provgate-test", "cluster": {"server": url, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": "provgate-test", "user": {"token": token}}],
        "contexts": [
            {
                "name": "provgate-test",
                "context": {"cluster": "provgate-test", "user": "provgate-test", "namespace": namespace},
            }
        ],
        "current-context": "provgate-test",
    }


def unique_name(prefix: str) -> str:
    """``prefix`` made a DNS-1123 label (lower case, a-z0-9-) plus a random suffix, at most 63 chars."""
    stem = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[:50].rstrip("-") or "t"
    return f"{stem}-{secrets.token_hex(4)}"


class Resource(NamedTuple):
    """A namespaced custom resource, e.g. ``Resource("tekton.dev", "v1", "taskruns")``, with the
    ``CustomObjectsApi`` calls tests make (plain dicts in and out)."""

    group: str
    version: str
    plural: str

    def _where(self, namespace: str) -> dict[str, str]:
        return {"group": self.group, "version": self.version, "namespace": namespace, "plural": self.plural}

    def get(self, api: Any, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = _custom(api).get_namespaced_custom_object(**self._where(namespace), name=name)
        return obj

    def list(self, api: Any, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = _custom(api).list_namespaced_custom_object(**self._where(namespace))[
            "items"
        ]
        return items

    def create(self, api: Any, namespace: str, body: dict[str, Any], **options: Any) -> dict[str, Any]:
        created: dict[str, Any] = _custom(api).create_namespaced_custom_object(
            **self._where(namespace), body=body, **options
        )
        return created

    def patch_status(self, api: Any, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of ``status`` through the status subresource."""
        patched: dict[str, Any] = _custom(api).patch_namespaced_custom_object_status(
            **self._where(namespace), name=name, body={"status": status}
        )
        return patched


def _custom(api: Any) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(api)


# -- waiting ---------------------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.1,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call ``check`` until it returns something truthy, and return that; ``TimeoutError`` naming ``what``
    and the last value (or exception) after ``timeout`` seconds. Exceptions of ``retry_on`` count as
    "not yet" (e.g. a 404 while a resource is not served yet); others propagate at once."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except retry_on as err:
            last = err
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s (last: {last!r})"[:2000])
        time.sleep(interval)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The status condition of ``type_`` of an object (as a dict), if it has one."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def wait_for_condition(
    api: Any,
    resource: Resource,
    namespace: str,
    name: str,
    type_: str = "Succeeded",
    status: str = "True",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Wait until custom object ``namespace/name`` has condition ``type_`` with ``status``; returns it."""

    def check() -> dict[str, Any] | None:
        obj = resource.get(api, namespace, name)
        cond = condition(obj, type_)
        return obj if cond is not None and cond.get("status") == status else None

    return wait_until(
        check, what=f"{resource[2]} {namespace}/{name} condition {type_}={status}", timeout=timeout
    )


# -- admission webhooks --------------------------------------------------------------------------------

# Every kind that carries a pod template, as an image admission webhook registers them.
WORKLOAD_RULES = [
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers"],
        "scope": "Namespaced",
    },
    {
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
        "scope": "Namespaced",
    },
    {
        "apiGroups": ["batch"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["jobs", "cronjobs"],
        "scope": "Namespaced",
    },
]


def webhook_configuration(
    kind: Literal["validating", "mutating"],
    name: str,
    url: str,
    ca_pem: bytes,
    *,
    rules: list[dict[str, Any]] | None = None,
    namespaces: list[str] | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 10,
) -> dict[str, Any]:
    """A (Validating|Mutating)WebhookConfiguration with one webhook called at ``url`` (https, loopback),
    trusting ``ca_pem``; ``namespaces`` limits it to those namespaces (default: all)."""
    webhook: dict[str, Any] = {
        "name": f"{name}.provgate.test",  # a webhook name needs three dot-separated parts
        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
        "rules": rules if rules is not None else WORKLOAD_RULES,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": failure_policy,
        "timeoutSeconds": timeout_seconds,
        "matchPolicy": "Equivalent",
    }
    if namespaces is not None:
        webhook["namespaceSelector"] = {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
            ]
        }
    kind_name = "ValidatingWebhookConfiguration" if kind == "validating" else "MutatingWebhookConfiguration"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind_name,
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


@contextlib.contextmanager
def registered_webhook(api: Any, configuration: dict[str, Any]) -> Iterator[str]:
    """Create a webhook configuration (see :func:`webhook_configuration`), yield its webhook's name (the
    one the API server's denials quote), and delete the configuration afterwards."""
    from kubernetes import client

    admission = client.AdmissionregistrationV1Api(api)
    name = configuration["metadata"]["name"]
    if configuration["kind"] == "ValidatingWebhookConfiguration":
        admission.create_validating_webhook_configuration(configuration)
        delete = admission.delete_validating_webhook_configuration
    else:
        admission.create_mutating_webhook_configuration(configuration)
        delete = admission.delete_mutating_webhook_configuration
    try:
        yield configuration["webhooks"][0]["name"]
    finally:
        delete(name)


def dry_run_pod(api: Any, namespace: str, image: str, name: str = "probe") -> Any:
    """A server-side dry-run create of a one-container Pod: goes through admission, stores nothing.
    Returns the Pod the API server would store, or the ``ApiException`` it answered with."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }
    try:
        return client.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as err:
        return err


def api_message(error: Any) -> str:
    """The message of the API server's ``Status`` in an ``ApiException`` (what kubectl prints)."""
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(getattr(error, "body", "") or error)


def denied_by(webhook_name: str) -> Callable[[Any], bool]:
    """A predicate for :func:`wait_for_webhook`: the answer is a denial by ``webhook_name``."""
    from kubernetes.client.exceptions import ApiException

    def check(outcome: Any) -> bool:
        return isinstance(outcome, ApiException) and api_message(outcome).startswith(
            f'admission webhook "{webhook_name}" denied'
        )

    return check


def wait_for_webhook(probe: Callable[[], T], answered: Callable[[T], bool], *, timeout: float = 30.0) -> T:
    """Repeat ``probe`` (e.g. :func:`dry_run_pod`) until ``answered`` says the webhook took part (a
    freshly registered configuration reaches the API server's admission chain asynchronously);
    returns that outcome."""

    def check() -> list[T] | None:
        outcome = probe()
        return [outcome] if answered(outcome) else None  # a list: the outcome itself may be falsy

    return wait_until(check, what="the webhook to answer a dry-run probe", timeout=timeout)[0]


# -- Tekton's CRDs ---------------------------------------------------------------------------------------


def load_tekton_crds(directory: Path) -> list[dict[str, Any]]:
    """Tekton's CRDs as released, except for their conversion: the release points it at Tekton's webhook,
    which does not run here, so every v1beta1 request would fail with a 500. With strategy None the API
    server serves v1beta1 by rewriting apiVersion only (Tekton's webhook would also rename fields)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # ~1.4 MB of YAML: libyaml is 10x faster
    crds = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                doc["spec"]["conversion"] = {"strategy": "None"}
                crds.append(doc)
    if not crds:
        raise StartError(f"no CustomResourceDefinition in {directory}")
    return crds


def install_crds(api: Any, crds: list[dict[str, Any]], timeout: float = 60.0) -> None:
    """Create ``crds`` and wait until each is Established and actually served at every version: a create
    can answer 404 for a couple of seconds after Established."""
    # Through CustomObjectsApi, which answers in plain dicts: the typed client would build a model
    # object for every node of a 466 KB schema.
    custom = _custom(api)
    for crd in crds:
        custom.create_cluster_custom_object(**CRDS, body=crd)
    for crd in crds:
        name = crd["metadata"]["name"]

        def established(name: str = name) -> bool:
            cond = condition(custom.get_cluster_custom_object(**CRDS, name=name), "Established")
            return cond is not None and cond["status"] == "True"

        wait_until(established, what=f"CRD {name} Established", timeout=timeout)
    for crd in crds:
        group, names = crd["spec"]["group"], crd["spec"]["names"]
        for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
            probe = {"apiVersion": f"{group}/{version}", "kind": names["kind"], "metadata": {"name": "probe"}}
            resource = Resource(group, version, names["plural"])
            wait_until(
                lambda resource=resource, probe=probe: _served(api, resource, probe),
                what=f"{names['plural']}.{group}/{version} served",
                timeout=timeout,
                retry_on=(),
            )


def _served(api: Any, resource: Resource, probe: dict[str, Any]) -> bool:
    """A dry-run create of ``probe`` reached the resource's handler (the probe may well be invalid)."""
    from kubernetes.client.exceptions import ApiException

    try:
        resource.create(api, "default", probe, dry_run="All")
    except ApiException as err:
        if err.status in (404, 429):  # not routed yet; the CRD handler not ready yet
            return False
        if err.status != 422:
            raise StartError(
                f"{resource.plural}.{resource.group}/{resource.version}: {api_message(err)}"
            ) from None
    return True


# -- starting the servers --------------------------------------------------------------------------------


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


class StartError(RuntimeError):
    pass


def _start_error(what: str, logs: dict[str, Path]) -> StartError:
    tails = "".join(f"\n--- {name}: {path} (tail) ---\n{_tail(path)}" for name, path in logs.items())
    return StartError(f"{what}{tails}")


def _popen(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_http(
    url: str, proc: subprocess.Popen[bytes], what: str, logs: dict[str, Path], verify: Any, deadline: float
) -> None:
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _start_error(f"{what} exited with {proc.returncode}", logs)
        try:
            response = httpx.get(url, verify=verify, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:300]}"
        except httpx.HTTPError as err:
            last = repr(err)
        time.sleep(0.1)
    raise _start_error(f"{what} not ready at {url} (last: {last})", logs)


def _write_credentials(workdir: Path) -> tuple[Path, Path, Path, Path, Path, str, str]:
    ca_file, ca_key, ca_cert = make_ca(workdir / "ca", "provgate test kube-apiserver CA")
    cert, key = make_server_cert(workdir, ca_key, ca_cert)
    # Service account tokens (TokenRequest) are signed with this key; the API server verifies with it.
    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_key_file, sa_pub_file = workdir / "sa.key", workdir / "sa.pub"
    sa_key_file.write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    sa_pub_file.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    admin_token, user_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    tokens = workdir / "tokens.csv"  # token,user,uid,"group1,group2"
    tokens.write_text(f'{admin_token},{ADMIN},{ADMIN}-uid,"system:masters"\n{user_token},{USER},{USER}-uid\n')
    tokens.chmod(0o600)
    return ca_file, cert, key, sa_key_file, sa_pub_file, admin_token, user_token


@contextlib.contextmanager
def running_cluster(workdir: Path, *, crds: bool = True) -> Iterator[KubeCluster]:
    """etcd and kube-apiserver in ``workdir``, ready, with Tekton's CRDs installed (unless ``crds`` is
    False); both stopped on exit. A start failure raises with the tails of both logs."""
    etcd_bin, apiserver_bin = require_binary("etcd"), require_binary("kube-apiserver")
    tekton_crds = load_tekton_crds(require_data("tekton-crds")) if crds else []
    workdir.mkdir(parents=True, exist_ok=True)
    logs = {"etcd": workdir / "etcd.log", "kube-apiserver": workdir / "kube-apiserver.log"}
    ca_file, cert, key, sa_key, sa_pub, admin_token, user_token = _write_credentials(workdir)
    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    etcd: subprocess.Popen[bytes] | None = None
    apiserver: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        etcd = _popen(
            [
                str(etcd_bin),
                "--name=provgate-test",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=provgate-test={peer_url}",
                "--unsafe-no-fsync",  # throwaway data: durability buys nothing, fsync costs seconds
                "--log-level=warn",
            ],
            logs["etcd"],
        )
        _wait_http(f"{etcd_url}/health", etcd, "etcd", logs, True, deadline)
        apiserver = _popen(
            [
                str(apiserver_bin),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--advertise-address={ADVERTISE_ADDRESS}",
                f"--tls-cert-file={cert}",
                f"--tls-private-key-file={key}",
                f"--client-ca-file={ca_file}",
                f"--cert-dir={workdir / 'certs'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={workdir / 'tokens.csv'}",
                # Without a controller-manager no `default` ServiceAccount appears, and this plugin
                # would refuse every Pod.
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
            ],
            logs["kube-apiserver"],
        )
        url = f"https://127.0.0.1:{api_port}"
        context = ssl.create_default_context(cafile=str(ca_file))
        _wait_http(f"{url}/readyz", apiserver, "kube-apiserver", logs, context, deadline)
        cluster = KubeCluster(
            url=url,
            ca_file=ca_file,
            admin_token=admin_token,
            user_token=user_token,
            kubeconfig=workdir / "kubeconfig.json",
            workdir=workdir,
            log_files=logs,
        )
        cluster.write_kubeconfig(admin_token, cluster.kubeconfig)
        if tekton_crds:
            try:
                install_crds(cluster.api, tekton_crds, timeout=max(deadline - time.monotonic(), 30.0))
            except Exception as err:
                raise _start_error(f"Tekton's CRDs could not be installed: {err}", logs) from err
        yield cluster
    finally:
        if apiserver is not None:
            # Throwaway data: no need for the graceful shutdown, which takes ~5 s.
            apiserver.kill()
            apiserver.wait()
        if etcd is not None:
            stop(etcd)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """The worker session's API server with Tekton's CRDs (one per xdist worker, never one per test)."""
    with running_cluster(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


@pytest.fixture
def kube_namespace(kube: KubeCluster, request: pytest.FixtureRequest) -> str:
    """A new namespace for this test, named after it."""
    return kube.create_namespace(request.node.name)
