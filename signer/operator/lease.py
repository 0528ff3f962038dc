"""Leader election on a ``coordination.k8s.io/v1`` Lease, so that of several replicas exactly one
attests (the others wait, ready to take over).

The holder renews every ``renew`` seconds; another replica takes the Lease once it has not been renewed
for ``duration`` seconds. A holder that cannot renew within ``duration - renew`` seconds stops working
at once (the process exits and is restarted), so two replicas never attest at the same time unless a
clock runs ``renew`` seconds apart. Every write carries the ``resourceVersion`` it read: of two replicas
racing for a free Lease, exactly one wins.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


class LeaseApi(Protocol):
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None: ...

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any] | None: ...


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _format(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class LeaderElection:
    api: LeaseApi
    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew: float = 2.0

    def _spec(self, acquired: str | None, transitions: int) -> dict[str, Any]:
        now = _format(_now())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease; True while this replica holds it."""
        lease = self.api.get_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, 0),
            }
            return self.api.create_lease(self.namespace, body) is not None
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            new_spec = self._spec(spec.get("acquireTime"), transitions)
        else:
            renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
            duration = float(spec.get("leaseDurationSeconds") or self.duration)
            if holder and renewed is not None and (_now() - renewed).total_seconds() < duration:
                return False  # held by a live replica
            new_spec = self._spec(None, transitions + 1)
            log.info("taking over the lease %s/%s from %r", self.namespace, self.name, holder or "nobody")
        body = {**lease, "spec": new_spec}
        return self.api.replace_lease(self.namespace, self.name, body) is not None

    def release(self) -> None:
        """Give the Lease up (a clean stop), so a standby takes over at once."""
        lease = self.api.get_lease(self.namespace, self.name)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        spec = dict(lease.get("spec") or {})
        spec["holderIdentity"] = None
        spec["renewTime"] = _format(_now() - dt.timedelta(seconds=self.duration + 1))
        self.api.replace_lease(self.namespace, self.name, {**lease, "spec": spec})

    def wait_for_lease(self, stopping: Any) -> bool:
        """Block until this replica holds the Lease (True) or ``stopping`` (an Event) is set (False)."""
        announced = False
        while not stopping.is_set():
            try:
                if self.try_acquire():
                    log.info("holding the lease %s/%s as %s", self.namespace, self.name, self.identity)
                    return True
            except Exception as err:  # the API server away: keep trying, as a standby does
                log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            if not announced:
                log.info("waiting for the lease %s/%s (another replica holds it)", self.namespace, self.name)
                announced = True
            stopping.wait(self.renew)
        return False

    def keep(self, stopping: Any) -> None:
        """Renew until ``stopping`` is set; returns early (having lost the Lease) when a renewal did not
        succeed within ``duration - renew`` seconds, so the caller stops working before anyone takes over."""
        deadline = time.monotonic() + self.duration - self.renew
        while not stopping.is_set():
            try:
                if self.try_acquire():
                    deadline = time.monotonic() + self.duration - self.renew
                else:
                    log.error("lease %s/%s was taken by another replica", self.namespace, self.name)
                    return
            except Exception as err:
                log.warning("lease %s/%s: renewal failed: %s", self.namespace, self.name, err)
            if time.monotonic() >= deadline:
                log.error("lease %s/%s: not renewed in time; stopping", self.namespace, self.name)
                return
            stopping.wait(self.renew)
