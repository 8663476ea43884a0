"""Fail closed: the operator acts on RedisQueues only while its admission policies are there.

At start and every ``interval`` seconds (five minutes by default) the guard reads each
admission policy and its binding (while they are not in force, sooner: after 2, 4, 8, 16 and
then every 30 seconds, so an install whose policies arrive just after the operator starts is
taken up within seconds) (two GETs each: reads, never writes) and compares them with
what this version ships (:mod:`..resource.admission`). While one is missing, changed,
narrowed or not enforced (a cluster without ValidatingAdmissionPolicy included), the read
side admits no RedisQueue: nothing is provisioned, injected or probed, and the leader's
status says why. When they are back, every RedisQueue is taken up again.

Single-tenant clusters may opt out (``REDISQUEUE_REQUIRE_ADMISSION_POLICIES=false``, chart
``admissionPolicies.required: false``): then the guard is not created at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..api.kube import Kube, KubeError
from ..objects.network import OperatorPeer
from ..resource.admission import (
    DEFAULT_INTERVAL_SECONDS,
    ENV_INTERVAL,
    ENV_POLICY_NAMES,
    ENV_REQUIRED,
    binding_problem,
    policy_names,
    policy_problem,
)
from ..resource.identity import JSON

log = logging.getLogger("redisqueue.operator")

ADMISSION_API: Final = "/apis/admissionregistration.k8s.io/v1"
#: While the policies are not in force: the first re-check, doubling up to the last.
RECHECK_FIRST_SECONDS: Final = 2.0
RECHECK_MAX_SECONDS: Final = 30.0
#: What status shows for every RedisQueue while the policies are missing, before the cause.
REFUSAL: Final = (
    "the operator does not act on RedisQueues while its admission policies are not installed "
    "as shipped (they check that a RedisQueue's author holds the rights it uses): "
)

Changed = Callable[[str | None], Awaitable[None]]

#: Labels that select this install's operator pods, and its namespace (the chart and manifests
#: set them): a stopping leader asks whether one of them is there to take over, and each
#: provisioned Redis's NetworkPolicy lets them in.
PEERS_ENV: Final = "REDISQUEUE_PEER_SELECTOR"
NAMESPACE_ENV: Final = "POD_NAMESPACE"


@dataclass(frozen=True, slots=True)
class Safeguards:
    """What the installer set around the operator (read from the environment at start)."""

    #: The admission policies that must be in force (role -> name); None: the installer opted
    #: out (a single-tenant cluster).
    admission_policies: Mapping[str, str] | None
    #: Seconds between two checks of the admission policies.
    admission_interval: float = DEFAULT_INTERVAL_SECONDS
    #: The operator's own pods, for the provisioned Redis's NetworkPolicies.
    peer: OperatorPeer = field(default_factory=OperatorPeer)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Safeguards:
        """Raises ValueError (naming the variable) for a setting it cannot read."""
        required = environ.get(ENV_REQUIRED, "true").strip().lower()
        if required not in {"true", "false"}:
            raise ValueError(f"{ENV_REQUIRED}: expected true or false, got {required!r}")
        names = policy_names(environ.get(ENV_POLICY_NAMES)) if required == "true" else None
        raw_interval = environ.get(ENV_INTERVAL, "").strip()
        try:
            interval = float(raw_interval) if raw_interval else DEFAULT_INTERVAL_SECONDS
        except ValueError:
            interval = 0.0
        if interval <= 0:
            raise ValueError(f"{ENV_INTERVAL}: expected a number of seconds above 0")
        labels = {}
        for part in environ.get(PEERS_ENV, "").split(","):
            key, _, value = part.partition("=")
            if key.strip():
                labels[key.strip()] = value.strip()
        peer = OperatorPeer(environ.get(NAMESPACE_ENV) or None, labels)
        return cls(names, interval, peer)


class AdmissionGuard:
    """Whether the admission policies ``names`` (role -> installed name) are in force."""

    def __init__(
        self,
        kube: Kube,
        names: Mapping[str, str],
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self.kube = kube
        self.names = dict(names)
        self.interval = interval
        #: Why the operator may not act now (None: the policies are in force).
        self.problem: str | None = "the admission policies have not been checked yet"

    @property
    def refusal(self) -> str | None:
        """The sentence status shows while the operator refuses to act, or None."""
        return None if self.problem is None else REFUSAL + self.problem

    async def check(self) -> str | None:
        """Read every policy and binding now; the first problem found, or None."""
        problems: list[str] = []
        for role, name in self.names.items():
            try:
                policy = await self._get("validatingadmissionpolicies", name)
                binding = await self._get("validatingadmissionpolicybindings", name)
            except KubeError as exc:
                if exc.not_found:  # the resource itself: ValidatingAdmissionPolicy not served
                    problems.append(
                        "this cluster does not serve ValidatingAdmissionPolicy "
                        "(admissionregistration.k8s.io/v1, Kubernetes 1.30 or later)"
                    )
                else:
                    problems.append(f"cannot read admission policy {name}: {exc.message}")
                break
            problem = policy_problem(role, name, policy) or binding_problem(name, binding)
            if problem is not None:
                problems.append(problem)
        return "; ".join(problems) or None

    async def _get(self, plural: str, name: str) -> JSON | None:
        path = f"{ADMISSION_API}/{plural}/{name}"
        try:
            return await self.kube.request("GET", path)
        except KubeError as exc:
            if exc.not_found and (exc.reason == "NotFound" and _names_object(exc.message, name)):
                return None  # the object is missing; the API is there
            raise

    async def update(self) -> bool:
        """Check now; True when the verdict changed (logged once per change)."""
        try:
            problem = await self.check()
        except (OSError, TimeoutError) as exc:
            # An API server that does not answer decides nothing: keep the last verdict.
            log.warning("could not check the admission policies: %s", type(exc).__name__)
            return False
        if problem == self.problem:
            return False
        self.problem = problem
        if problem is None:
            log.info("admission policies in force: %s", ", ".join(self.names.values()))
        else:
            log.error("%s%s", REFUSAL, problem)
        return True

    def delays(self) -> Iterator[float]:
        """Seconds before each next check: ``interval`` while the policies are in force, else
        :data:`RECHECK_FIRST_SECONDS` doubling up to :data:`RECHECK_MAX_SECONDS` (never more
        than ``interval``)."""
        retry = RECHECK_FIRST_SECONDS
        while True:
            if self.problem is None:
                retry = RECHECK_FIRST_SECONDS
                yield self.interval
            else:
                yield min(retry, RECHECK_MAX_SECONDS, self.interval)
                retry *= 2

    async def run(self, changed: Changed) -> None:
        """Check until cancelled (see :meth:`delays`); ``changed`` hears of each new verdict
        (None: in force again)."""
        for delay in self.delays():
            await asyncio.sleep(delay)
            if await self.update():
                await changed(self.problem)


def _names_object(message: str, name: str) -> bool:
    # '... "redisqueue-author-permissions" not found' names the object; a group version the
    # server does not serve answers "the server could not find the requested resource".
    return f'"{name}" not found' in message
