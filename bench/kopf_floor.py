"""The kopf floor: the floor's writes made by the barest kopf operator that makes them.

bench/scale.py runs this as a process beside its floors. One ``@kopf.on.create`` handler makes
the writes of :func:`floor_writes.write_rest` for each new RedisQueue (finalizer, app Secret,
status, Event), with kopf configured as the operator configures it where that saves writes
(what kopf has handled kept in memory, no Events of kopf's own) and with no delete handler, so
kopf adds no finalizer of its own. It makes the floor's writes with the floor's client; what it
adds is kopf's handling of every watch event. The operator makes these writes and more under
kopf, so this is as close as it could come to the floor while kopf handles its events.

Environment (never arguments): ``KUBECONFIG``, ``KOPF_FLOOR_NAMESPACE``, ``KOPF_FLOOR_REDIS``
(``host:port`` of the Redis the contract names) and ``KOPF_FLOOR_PASSWORD``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

# As the operator does: kopf would load kubernetes_asyncio, which the operator never uses.
from redisqueue.controller.cli import keep_kubernetes_client_out

keep_kubernetes_client_out()

import kopf  # noqa: E402

from floor_writes import write_rest  # noqa: E402
from redisqueue.contract import ConnectionContract  # noqa: E402
from redisqueue.controller.api.kopfstorage import quiet_settings  # noqa: E402
from redisqueue.controller.api.kube import Kube  # noqa: E402
from redisqueue.controller.api.login import login, share_pool  # noqa: E402
from redisqueue.controller.resource.identity import DOMAIN, GROUP, PLURAL, VERSION  # noqa: E402
from redisqueue.controller.telemetry.logs import configure  # noqa: E402

#: kopf's own finalizer under a name of its own: the handler adds the floor's (the operator's
#: name), which kopf must not take for one it put there and no handler needs any more.
KOPF_FINALIZER = f"bench.{DOMAIN}/kopf-floor"


def main() -> None:
    namespace = os.environ["KOPF_FLOOR_NAMESPACE"]
    host, _, port = os.environ["KOPF_FLOOR_REDIS"].rpartition(":")
    contract = ConnectionContract(
        host=host, port=int(port), password=os.environ["KOPF_FLOOR_PASSWORD"]
    )
    configure("INFO", "text")  # the operator's log level in the benchmark
    kopf.on.login()(login)

    @kopf.on.startup()
    async def configure_kopf(settings: kopf.OperatorSettings, **_: Any) -> None:
        quiet_settings(settings, finalizer=KOPF_FINALIZER)  # the operator's, but the name

    async def run() -> None:
        writer = Kube.from_kubeconfig(os.environ["KUBECONFIG"])
        share_pool(writer.connector())  # kopf's requests and the writes over one pool

        @kopf.on.create(GROUP, VERSION, PLURAL)
        async def created(body: kopf.Body, **_: Any) -> None:
            await write_rest(writer, namespace, body, contract)

        try:
            await kopf.operator(standalone=True, clusterwide=False, namespaces=[namespace])
        finally:
            await writer.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
