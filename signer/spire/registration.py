"""Register and remove a TaskRun's SPIRE identity: the piece of TEP-0089 Tekton never shipped.

Without a registration entry the entrypoint of a SPIRE-enabled TaskRun gets no SVID and cannot sign its
results. Upstream's controller code (``pkg/spire/controller.go: CreateEntries``) was never wired in, so
the operator does it: when the TaskRun's pod is known it creates the entry

* SPIFFE ID ``spiffe://<td>/ns/<namespace>/taskrun/<name>`` (what ``verify-results`` expects),
* parent ``spiffe://<td><spire-node-alias-prefix><node-name>``, the node alias of the pod's node,
* selectors ``k8s:ns:<namespace>`` and ``k8s:pod-name:<pod>`` (and ``k8s:pod-uid:<uid>`` when known,
  which a recreated pod of the same name cannot match),

and deletes it when the run is done. It drives the ``spire-server entry create|show|delete`` CLI on the
server's admin socket and reads ``-output json``: the CLI is what a SPIRE installation already ships next
to the server, and it needs no admin SVID or gRPC stubs. Note the CLI exits 0 even when an entry in the
batch failed, so every per-entry ``status.code`` is checked.

Idempotent both ways: registering twice leaves one entry, deregistering a missing entry is a no-op.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attestation.errors import InputError, LimitExceeded, ProvgateError
from attestation.spiffe import parse_spiffe_id, validate_trust_domain
from signer.spire.results import taskrun_spiffe_id

DEFAULT_NODE_ALIAS_PREFIX = "/tekton-node/"  # Tekton's config-spire default
DEFAULT_SOCKET = "/tmp/spire-server/private/api.sock"  # spire-server's own default
DEFAULT_TIMEOUT = 30.0
MAX_CLI_OUTPUT = 4 * 1024 * 1024  # one TaskRun has one entry; a page of them stays far below this
# gRPC status codes SPIRE puts in each batch result.
_OK, _NOT_FOUND, _ALREADY_EXISTS = 0, 5, 6
# Kubernetes object names: DNS-1123 subdomains (pods, TaskRuns, nodes) and labels (namespaces). Being
# strict here keeps every value a plain SPIFFE path segment and a plain selector value.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_UID = re.compile(r"[0-9a-fA-F-]{1,64}")


class SpireServerError(ProvgateError):
    """The SPIRE server (through its CLI) could not be reached or refused an entry."""


@dataclass(frozen=True)
class TaskRunEntry:
    """The registration entry one TaskRun's pod needs."""

    spiffe_id: str
    parent_id: str
    selectors: tuple[str, ...]  # "type:value", sorted
    x509_svid_ttl: int | None = None  # seconds; None: the server's default_x509_svid_ttl
    # Unix time after which the server prunes the entry by itself: a safety net for a run whose
    # deregistration never happens (operator down, run deleted while it was away).
    expires_at: int | None = None


@dataclass(frozen=True)
class Registered:
    entry_id: str
    created: bool  # False: an identical entry was already there


def _check_name(value: Any, what: str, pattern: re.Pattern[str], limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{what} is missing")
    if len(value) > limit:
        raise LimitExceeded(f"{what} is longer than {limit} characters")
    if not pattern.fullmatch(value):
        raise InputError(f"{what} {value!r} is not a valid Kubernetes name")
    return value


def taskrun_entry(
    taskrun: Mapping[str, Any],
    *,
    trust_domain: str,
    node_name: str,
    node_alias_prefix: str = DEFAULT_NODE_ALIAS_PREFIX,
    pod_uid: str | None = None,
    x509_svid_ttl: int | None = None,
    expires_at: int | None = None,
) -> TaskRunEntry | None:
    """The entry for ``taskrun`` (a TaskRun object), or None while its pod is not known yet.

    ``node_name`` is the pod's ``spec.nodeName`` and ``pod_uid`` its ``metadata.uid``: neither is on the
    TaskRun, the operator reads them from the pod named in ``status.podName``.
    """
    if not isinstance(taskrun, Mapping) or taskrun.get("kind") != "TaskRun":
        raise InputError("SPIRE registration is for TaskRun objects")
    meta = taskrun.get("metadata") or {}
    status = taskrun.get("status") or {}
    if not isinstance(meta, Mapping) or not isinstance(status, Mapping):
        raise InputError("TaskRun metadata and status must be objects")
    validate_trust_domain(trust_domain, what="spire-trust-domain")
    namespace = _check_name(meta.get("namespace"), "TaskRun metadata.namespace", _LABEL, 63)
    name = _check_name(meta.get("name"), "TaskRun metadata.name", _SUBDOMAIN, 253)
    pod = status.get("podName")
    if not pod:
        return None
    pod = _check_name(pod, f"TaskRun {namespace}/{name} status.podName", _SUBDOMAIN, 253)
    node = _check_name(node_name, f"node of TaskRun {namespace}/{name}", _SUBDOMAIN, 253)
    if not isinstance(node_alias_prefix, str) or not node_alias_prefix.startswith("/"):
        raise InputError(f"spire-node-alias-prefix {node_alias_prefix!r} must start with /")
    parent = parse_spiffe_id(f"spiffe://{trust_domain}{node_alias_prefix}{node}", what="node alias")
    selectors = [f"k8s:ns:{namespace}", f"k8s:pod-name:{pod}"]
    if pod_uid is not None:
        if not isinstance(pod_uid, str) or not _UID.fullmatch(pod_uid):
            raise InputError(f"pod UID {pod_uid!r} of TaskRun {namespace}/{name} is not a UID")
        selectors.append(f"k8s:pod-uid:{pod_uid}")
    if x509_svid_ttl is not None and (not isinstance(x509_svid_ttl, int) or x509_svid_ttl <= 0):
        raise InputError(f"x509 SVID TTL {x509_svid_ttl!r} must be a positive number of seconds")
    if expires_at is not None and (not isinstance(expires_at, int) or expires_at <= 0):
        raise InputError(f"entry expiry {expires_at!r} must be a positive Unix time")
    spiffe_id = parse_spiffe_id(taskrun_spiffe_id(trust_domain, namespace, name), what="TaskRun SPIFFE ID")
    return TaskRunEntry(spiffe_id, parent, tuple(sorted(selectors)), x509_svid_ttl, expires_at)


class SpireServerCli:
    """``spire-server`` subcommands on one admin socket, each bounded by ``timeout`` seconds."""

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        *,
        binary: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        found = binary or shutil.which("spire-server")
        if not found:
            raise InputError("spire-server CLI not found (put it on PATH or configure its path)")
        self.binary = found
        self.socket_path = socket_path
        self.timeout = timeout

    def run_json(self, *args: str) -> dict[str, Any]:
        """Run ``spire-server <args> -socketPath S -output json``; the parsed answer."""
        what = f"spire-server {' '.join(args[:2])} on {self.socket_path}"
        if not os.path.exists(self.socket_path):
            raise SpireServerError(f"{what}: admin socket does not exist (is the SPIRE server running?)")
        try:
            done = subprocess.run(
                [self.binary, *args, "-socketPath", self.socket_path, "-output", "json"],
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SpireServerError(f"{what}: no answer within {self.timeout:g}s") from None
        except OSError as err:
            raise InputError(f"cannot run {self.binary}: {err.strerror or err}") from None
        if done.returncode != 0:
            raise SpireServerError(f"{what} failed: {_one_line(done.stderr or done.stdout)}")
        if len(done.stdout) > MAX_CLI_OUTPUT:
            raise LimitExceeded(f"{what}: answer is larger than {MAX_CLI_OUTPUT} bytes")
        try:
            parsed = json.loads(done.stdout)
        except ValueError:
            raise SpireServerError(f"{what}: answer is not JSON: {_one_line(done.stdout)}") from None
        if not isinstance(parsed, dict):
            raise SpireServerError(f"{what}: answer is not a JSON object")
        return parsed

    def entries(self, spiffe_id: str) -> list[dict[str, Any]]:
        """All entries with exactly this SPIFFE ID."""
        answer = self.run_json("entry", "show", "-spiffeID", spiffe_id)
        found = answer.get("entries") or []
        if not isinstance(found, list):
            raise SpireServerError("spire-server entry show: 'entries' is not a list")
        return [e for e in found if isinstance(e, dict) and _entry_spiffe_id(e) == spiffe_id]

    def create(self, entry: TaskRunEntry) -> tuple[int, str, dict[str, Any]]:
        """(status code, message, entry) of one ``entry create``."""
        args = ["entry", "create", "-spiffeID", entry.spiffe_id, "-parentID", entry.parent_id]
        for selector in entry.selectors:
            args += ["-selector", selector]
        if entry.x509_svid_ttl is not None:
            args += ["-x509SVIDTTL", str(entry.x509_svid_ttl)]
        if entry.expires_at is not None:
            args += ["-entryExpiry", str(entry.expires_at)]
        return _only_result(self.run_json(*args), "entry create")

    def delete(self, entry_id: str) -> bool:
        """Delete one entry; False when it was already gone."""
        answer = self.run_json("entry", "delete", "-entryID", entry_id)
        code, message, _ = _only_result(answer, "entry delete")
        if code == _NOT_FOUND:
            return False
        if code != _OK:
            raise SpireServerError(f"spire-server entry delete {entry_id}: {message} (code {code})")
        return True


def register_taskrun(cli: SpireServerCli, entry: TaskRunEntry) -> Registered:
    """Make ``entry`` the one registration of its SPIFFE ID.

    An identical entry (same parent and selectors; SPIRE's own notion of "similar", so TTL and expiry
    are not compared) is kept; entries with this SPIFFE ID but other
    selectors or parent are deleted first: they belong to an earlier pod of a TaskRun with the same name,
    and leaving them would let that pod (or whatever now matches its selectors) speak as this run.
    """
    wanted = (entry.parent_id, entry.selectors)
    same: list[str] = []
    for existing in cli.entries(entry.spiffe_id):
        if (_entry_parent_id(existing), _entry_selectors(existing)) == wanted:
            same.append(str(existing.get("id", "")))
        else:
            cli.delete(str(existing.get("id", "")))
    if same:
        return Registered(same[0], created=False)
    code, message, created = cli.create(entry)
    if code == _OK:
        return Registered(str(created.get("id", "")), created=True)
    if code == _ALREADY_EXISTS:  # someone registered it between our show and create
        for existing in cli.entries(entry.spiffe_id):
            if (_entry_parent_id(existing), _entry_selectors(existing)) == wanted:
                return Registered(str(existing.get("id", "")), created=False)
    raise SpireServerError(f"spire-server entry create {entry.spiffe_id}: {message} (code {code})")


def deregister_taskrun(cli: SpireServerCli, spiffe_id: str) -> int:
    """Delete every entry of ``spiffe_id``; how many were deleted (0 when none was there)."""
    spiffe_id = parse_spiffe_id(spiffe_id, what="TaskRun SPIFFE ID")
    return sum(cli.delete(str(e.get("id", ""))) for e in cli.entries(spiffe_id))


def _only_result(answer: Mapping[str, Any], what: str) -> tuple[int, str, dict[str, Any]]:
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], dict):
        got = _one_line(json.dumps(answer))
        raise SpireServerError(f"spire-server {what}: expected one result, got {got}")
    result = results[0]
    status = result.get("status") or {}
    code = status.get("code", 0) if isinstance(status, dict) else -1
    message = status.get("message", "") if isinstance(status, dict) else ""
    entry: dict[str, Any] = result["entry"] if isinstance(result.get("entry"), dict) else {}
    if not isinstance(code, int):
        raise SpireServerError(f"spire-server {what}: status code {code!r} is not a number")
    return code, _one_line(str(message)), entry


def _id_of(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    return f"spiffe://{value.get('trust_domain', '')}{value.get('path', '')}"


def _entry_spiffe_id(entry: Mapping[str, Any]) -> str:
    return _id_of(entry.get("spiffe_id"))


def _entry_parent_id(entry: Mapping[str, Any]) -> str:
    return _id_of(entry.get("parent_id"))


def _entry_selectors(entry: Mapping[str, Any]) -> tuple[str, ...]:
    selectors: Sequence[Any] = entry.get("selectors") or []
    return tuple(
        sorted(f"{s.get('type', '')}:{s.get('value', '')}" for s in selectors if isinstance(s, dict))
    )


def _one_line(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    line = " ".join(text.split())
    return line[:500] or "no output"
