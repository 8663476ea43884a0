"""The path of one reconcile through the operator's code, counted.

Creates one external-mode RedisQueue (auth Secret, one app Secret) in the in-memory API of
the fast tier (tests/harness/fake_kube.py) against a real redis-server, runs the leader's
reconcile once under a profiler hook, and prints:

* stops: functions of ``redisqueue.controller`` entered (comprehensions left out);
* files: the distinct modules those functions live in;
* returns: returns from one module into another (each a hop a reader follows back);
* the stop at which the app Secret is written, and the files entered up to it.

Run: ``python bench/trace_reconcile.py`` (needs redis-server). A reader's path, not a
speed: run-to-run it prints the same figures.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "operator"))

from harness.fake_kube import FakeKube  # noqa: E402
from harness.operator_harness import TEST_DENIED_HOSTS  # noqa: E402
from harness.redis_server import RedisServer  # noqa: E402
from redisqueue.controller.readside.side import ReadSide  # noqa: E402
from redisqueue.controller.reconciler import Reconciler  # noqa: E402
from redisqueue.controller.resource.policy import ENV_DENIED_HOSTS, OperatorPolicy  # noqa: E402

PACKAGE = str(HERE.parent / "operator" / "redisqueue" / "controller")
SKIPPED = {"<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>", "<lambda>"}


class Trace:
    """Calls and cross-module returns in the controller package, in order."""

    def __init__(self) -> None:
        self.stops: list[str] = []
        self.returns = 0
        self.written_at: int | None = None

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE) or code.co_name in SKIPPED:
            return
        # A coroutine resumed after an await is a "call" too: count first entries only.
        first_entry = frame.f_lasti <= 0 or not (code.co_flags & 0x80)
        if event == "call" and first_entry:
            module = code.co_filename[len(PACKAGE) + 1 :]
            self.stops.append(f"{module}:{code.co_name}")
        elif event == "return" and frame.f_back is not None:
            caller = frame.f_back.f_code.co_filename
            if caller.startswith(PACKAGE) and caller != code.co_filename:
                self.returns += 1


async def one_reconcile(server: RedisServer, trace: Trace) -> None:
    kube = FakeKube()
    password = base64.b64encode((server.password or "").encode()).decode()
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "redis-auth", "namespace": "shop"},
            "data": {"password": password},
        }
    )
    body = kube.put(
        {
            "apiVersion": "redisqueue.dev/v1alpha1",
            "kind": "RedisQueue",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {
                "redis": {"external": {"host": server.host, "port": server.port}},
                "auth": {"secretRef": {"name": "redis-auth"}},
                "inject": [{"secretName": "orders-app"}],
            },
        }
    )
    apply: Callable[..., Any] = kube.apply

    async def noted_apply(obj: dict[str, Any], **kwargs: Any) -> Any:
        if obj["kind"] == "Secret" and trace.written_at is None:
            trace.written_at = len(trace.stops)
        return await apply(obj, **kwargs)

    kube.apply = noted_apply  # type: ignore[method-assign]
    # The default policy refuses loopback; this Redis listens there, as in the tests.
    policy = OperatorPolicy.from_env({ENV_DENIED_HOSTS: TEST_DENIED_HOSTS})
    side = ReadSide(kube, policy=policy)  # type: ignore[arg-type]
    reconciler = Reconciler(kube, side, instance="trace")  # type: ignore[arg-type]
    sys.setprofile(trace.hook)
    try:
        await reconciler.reconcile(body, created=True)
    finally:
        sys.setprofile(None)
        await side.close()


def main() -> int:
    trace = Trace()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis", password="trace-pw").start()
        try:
            asyncio.run(one_reconcile(server, trace))
        finally:
            server.stop()
    files = {stop.split(":")[0] for stop in trace.stops}
    upto = trace.written_at or len(trace.stops)
    before = {stop.split(":")[0] for stop in trace.stops[:upto]}
    print(
        f"one reconcile: {len(trace.stops)} stops in {len(files)} files, "
        f"{trace.returns} returns across modules; the app Secret is written at stop {upto} "
        f"({len(before)} files entered by then)"
    )
    for i, stop in enumerate(trace.stops, 1):
        print(f"  {i:3d} {stop}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
