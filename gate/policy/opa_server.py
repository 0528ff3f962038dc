"""The OPA engine: a real OPA server through ``opa-python-client``.

Policies and data are uploaded once over the REST API; each evaluation is one ad-hoc query carrying the
input. The engine owns the server's ``provgate/*`` policies and its whole data document: one OPA server
serves one policy set.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from attestation.errors import InputError, PolicyError
from gate.config import EngineOptions
from gate.policy.metadata import package_of
from gate.policy.model import Evaluation, PolicySet
from gate.policy.results import decision_query, evaluation_from

log = logging.getLogger(__name__)

POLICY_ID_PREFIX = "provgate/"


def _client(url: str, timeout: float) -> OpaClient:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InputError(f"OPA URL {url!r} must be http(s)://host:port")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # Retries off: a failed evaluation must surface (and deny), not be silently repeated.
    return OpaClient(host=parts.hostname, port=port, ssl=parts.scheme == "https", timeout=timeout, retries=0)


def _policy_id(path: str, roots: tuple[Path, ...]) -> str:
    p = Path(path)
    for root in roots:
        if root.is_dir() and p.is_relative_to(root):
            return POLICY_ID_PREFIX + p.relative_to(root).as_posix()
    return POLICY_ID_PREFIX + p.name


class OpaEngine:
    """Decisions from an OPA server. A ``requests`` session is not documented as thread-safe, so calls
    are serialised by a lock; ``evaluate`` is safe to call from several threads.

    Not pure: the server evaluates built-ins with other sources of truth (``time.now_ns``, ``http.send``)
    and its policies and data can change under us, so every decision asks it.
    """

    pure = False

    def __init__(
        self,
        policy_set: PolicySet,
        url: str,
        *,
        with_tests: bool = False,
        timeout: float = EngineOptions().opa_timeout,
    ) -> None:
        self._policy_set = policy_set
        self._query = decision_query(policy_set)
        self._url = url
        self._opa = _client(url, timeout)
        self._lock = threading.Lock()
        try:
            self._load(with_tests)
        except requests.RequestException as err:
            raise PolicyError(f"OPA at {url}: cannot load policies: {err}") from None
        if not with_tests:
            self.evaluate({"image": {}, "attestations": []})

    def _load(self, with_tests: bool) -> None:
        session = self._opa._session
        root = self._opa.root_url
        self._clear(session, root)
        # Data first: modules may refer to it, and OPA checks them against what is there.
        resp = session.put(f"{root}/data", json=dict(self._policy_set.data), timeout=self._opa.timeout)
        if resp.status_code not in (200, 204):
            raise PolicyError(f"OPA at {self._url}: data rejected: {resp.text[:300]}")
        modules = dict(self._policy_set.modules)
        if with_tests:
            modules.update(self._policy_set.test_modules)
        for path, source in upload_order(modules):
            pid = _policy_id(path, self._policy_set.roots)
            resp = session.put(
                f"{root}/policies/{pid}",
                data=source.encode(),
                headers={"Content-Type": "text/plain"},
                timeout=self._opa.timeout,
            )
            if resp.status_code != 200:
                raise PolicyError(f"{path}: OPA rejected the module: {_opa_error(resp)}")
        log.debug("OPA at %s: %d module(s) and the data loaded", self._url, len(modules))

    def _clear(self, session: requests.Session, root: str) -> None:
        """Delete the server's ``provgate/*`` modules, dependents before what they import.

        OPA refuses (HTTP 400) to delete a module that a remaining module still refers to, and uploading
        over the old set would compile each new module against stale neighbours, so the old set goes
        first, in reverse upload order. The dependency scan is textual; a pass that could not delete
        everything is repeated while it makes progress.
        """
        listing = session.get(f"{root}/policies", timeout=self._opa.timeout)
        listing.raise_for_status()
        ours = {
            p["id"]: p.get("raw", "")
            for p in listing.json().get("result", [])
            if str(p.get("id", "")).startswith(POLICY_ID_PREFIX)
        }
        pending = [pid for pid, _ in reversed(upload_order(ours))]
        while pending:
            refused: list[str] = []
            for pid in pending:
                resp = session.delete(f"{root}/policies/{pid}", timeout=self._opa.timeout)
                if resp.status_code == 400:
                    refused.append(pid)
                elif resp.status_code not in (200, 404):
                    raise PolicyError(f"OPA at {self._url}: cannot remove {pid}: {_opa_error(resp)}")
            if len(refused) == len(pending):
                raise PolicyError(
                    f"OPA at {self._url}: cannot remove the previous policies: {_opa_error(resp)}"
                )
            pending = refused

    def query(self, query: str, policy_input: Mapping[str, Any] | None = None) -> Any:
        """The value bound to ``x`` by ``query`` (None when undefined); :class:`PolicyError` on failure."""
        body: dict[str, Any] = {"query": query}
        if policy_input is not None:
            body["input"] = policy_input
        return self._post_query(json=body)

    def _post_query(self, **request: Any) -> Any:
        try:
            with self._lock:
                resp = self._opa._session.post(
                    f"{self._opa.root_url}/query", timeout=self._opa.timeout, **request
                )
        except requests.RequestException as err:
            raise PolicyError(f"OPA at {self._url}: {err}") from None
        if resp.status_code != 200:
            raise PolicyError(f"OPA at {self._url}: query failed: {_opa_error(resp)}")
        results = resp.json().get("result") or []
        if not results:
            return None
        return results[0].get("x")

    def evaluate(self, policy_input: Mapping[str, Any]) -> Evaluation:
        start = time.perf_counter()
        output = self.query(self._query, dict(policy_input))
        return evaluation_from(output, self._policy_set, (time.perf_counter() - start) * 1000)

    def evaluate_json(self, raw: bytes) -> Evaluation:
        # The encoded input goes into the request body as it is: the server parses it once.
        start = time.perf_counter()
        body = b'{"query":' + json.dumps(self._query).encode() + b',"input":' + raw + b"}"
        output = self._post_query(data=body, headers={"Content-Type": "application/json"})
        return evaluation_from(output, self._policy_set, (time.perf_counter() - start) * 1000)

    def close(self) -> None:
        self._opa.close_connection()


def upload_order(modules: Mapping[str, str]) -> list[tuple[str, str]]:
    """Modules ordered so that each comes after the packages it refers to.

    OPA compiles every module as it is uploaded, against what is already there, so a rule calling a
    function of a module not yet uploaded is rejected.
    """
    packages = {path: package_of(source, path) for path, source in modules.items()}

    def deps(path: str) -> set[str]:
        source = modules[path]
        return {
            other
            for other, pkg in packages.items()
            if other != path and re.search(r"\bdata\." + re.escape(pkg) + r"\b", source)
        }

    ordered: list[str] = []
    pending = sorted(modules)
    while pending:
        ready = [p for p in pending if deps(p) <= set(ordered)] or pending[:1]  # a cycle: OPA will say
        ordered.extend(ready)
        pending = [p for p in pending if p not in ready]
    return [(p, modules[p]) for p in ordered]


def _opa_error(resp: requests.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}"
    errors = doc.get("errors") or []
    if errors and isinstance(errors[0], dict):
        first = errors[0]
        loc = first.get("location") or {}
        return f"{first.get('message', doc.get('message'))} (line {loc.get('row', '?')})"
    return str(doc.get("message") or f"HTTP {resp.status_code}")
