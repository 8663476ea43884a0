"""Where the API server's CPU went, by kind of work, in `scale.py --apiserver-profile` profiles.

    python bench/pprof_share.py DIR/*.pprof

Each sample counts once, under the first kind below that one of its frames belongs to
(the Go collector first: it runs beside whatever allocated), else under "other". Seconds
of CPU per profile. Needs ``go`` on PATH (``go tool pprof``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: Kinds of work, each named by substrings of the Go functions that do it.
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Go GC", ("runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep")),
    ("CEL", ("cel-go", "/cel.", "validating.(*validator)")),
    ("managedFields", ("structured-merge-diff", "fieldmanager")),
    ("watch sends", ("cacher.(*cacheWatcher)", "handlers.(*WatchServer)", "watchcache")),
    ("TLS", ("crypto/tls", "crypto/internal", "crypto/aes", "crypto/ecdsa", "crypto/rsa")),
    ("audit", ("audit",)),
    ("etcd client", ("go.etcd.io", "google.golang.org/grpc")),
    ("JSON", ("encoding/json", "sigs.k8s.io/json", "json-iterator")),
)
SEPARATOR = "-----------+-------------------------------------------------------"
SAMPLE = re.compile(r"\s*([\d.]+)(ms|s)\s+(.*)")


def kind_of(frames: list[str]) -> str:
    for kind, markers in KINDS:
        if any(marker in frame for frame in frames for marker in markers):
            return kind
    return "other"


def shares(profile: Path) -> Counter[str]:
    """Seconds of CPU by kind in ``profile`` ("total" too)."""
    traces = subprocess.run(
        ["go", "tool", "pprof", "-traces", str(profile)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds: Counter[str] = Counter()
    for block in traces.split(SEPARATOR)[1:]:
        lines = [line for line in block.strip().splitlines() if line.strip()]
        first = SAMPLE.match(lines[0]) if lines else None
        if first is None:
            continue
        value = float(first.group(1)) / (1000 if first.group(2) == "ms" else 1)
        frames = [first.group(3)] + [line.strip() for line in lines[1:]]
        seconds[kind_of(frames)] += value
        seconds["total"] += value
    return seconds


def main() -> int:
    profiles = [Path(arg) for arg in sys.argv[1:]]
    if not profiles:
        print(__doc__)
        return 2
    columns = ["total", *(kind for kind, _ in KINDS), "other"]
    width = max(len(p.stem) for p in profiles)
    print(f"{'profile':{width}}  " + "  ".join(f"{c:>13}" for c in columns))
    for profile in profiles:
        found = shares(profile)
        print(f"{profile.stem:{width}}  " + "  ".join(f"{found[c]:13.2f}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
