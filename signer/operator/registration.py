"""TEP-0089 registration glue: a running TaskRun's SPIRE entry is created once its pod is known and
scheduled, and deleted when the run completes, through :mod:`signer.spire.registration`.

The entry names the pod by UID (a recreated pod of the same name does not match it) and its node (the
parent is the node's alias); both are read from the pod named in the TaskRun's ``status.podName``. What
was registered is remembered per TaskRun, so a run's many status updates cost one CLI call; after a
restart registering again finds the entry there and keeps it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from signer.operator.config import RegistrationConfig
from signer.spire.registration import (
    Registered,
    SpireServerCli,
    deregister_taskrun,
    register_taskrun,
    taskrun_entry,
)
from signer.spire.results import taskrun_spiffe_id

log = logging.getLogger(__name__)

GetPod = Callable[[str, str], Mapping[str, Any] | None]


class Registrar:
    def __init__(self, config: RegistrationConfig) -> None:
        self.config = config
        self.cli = SpireServerCli(config.server_socket, binary=config.cli)
        self._registered: dict[str, tuple[str, str, str]] = {}  # TaskRun uid -> (pod name, pod uid, entry)
        self._lock = threading.Lock()

    def ensure(self, taskrun: Mapping[str, Any], get_pod: GetPod) -> Registered | None:
        """Register the entry of a running TaskRun; None while its pod is not there or not scheduled."""
        meta = taskrun.get("metadata") or {}
        pod_name = (taskrun.get("status") or {}).get("podName")
        if not pod_name:
            return None
        uid = str(meta.get("uid"))
        with self._lock:
            known = self._registered.get(uid)
        if known is not None and known[0] == pod_name:
            return Registered(known[2], created=False)  # a status update of a run already registered
        pod = get_pod(str(meta.get("namespace")), str(pod_name))
        if pod is None:
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        pod_uid = str((pod.get("metadata") or {}).get("uid") or "")
        if not node or not pod_uid:
            return None
        entry = taskrun_entry(
            taskrun,
            trust_domain=self.config.trust_domain,
            node_name=str(node),
            node_alias_prefix=self.config.node_alias_prefix,
            pod_uid=pod_uid,
            x509_svid_ttl=self.config.svid_ttl,
            expires_at=int(time.time()) + self.config.entry_ttl,
        )
        if entry is None:
            return None
        registered = register_taskrun(self.cli, entry)
        with self._lock:
            self._registered[uid] = (str(pod_name), pod_uid, registered.entry_id)
        log.info(
            "registered %s for pod %s (entry %s%s)",
            entry.spiffe_id,
            pod_name,
            registered.entry_id,
            "" if registered.created else ", already there",
        )
        return registered

    def remove(self, taskrun: Mapping[str, Any]) -> int:
        """Delete the entries of a completed TaskRun; how many there were."""
        meta = taskrun.get("metadata") or {}
        spiffe_id = taskrun_spiffe_id(
            self.config.trust_domain, str(meta.get("namespace")), str(meta.get("name"))
        )
        deleted = deregister_taskrun(self.cli, spiffe_id)
        with self._lock:
            self._registered.pop(str(meta.get("uid")), None)
        if deleted:
            log.info("deregistered %s (%d entries)", spiffe_id, deleted)
        return deleted
