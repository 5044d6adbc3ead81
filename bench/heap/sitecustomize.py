"""A heap census of the operator process, for the memory figures of docs/benchmarks.md.

Why it exists: py-spy samples CPU, not memory, and the operator's RSS at 1,000 Rollouts is
the one benchmark target that grew (issue 12). Put this directory first on PYTHONPATH and
set HEAPPROBE to an output directory: Python imports ``sitecustomize`` in every process,
and in the operator's (``python -m ferryman``) only, this starts ``tracemalloc`` (frames
per traceback: HEAPPROBE_FRAMES, default 1) and installs a SIGUSR2 handler that writes
``$HEAPPROBE/heap-<pid>.txt``: traced current and peak (MiB), the 40 largest allocation
sites by file and by line (MiB, blocks), and the 30 most numerous object types the
garbage collector tracks. tracemalloc slows the process and adds to its RSS; read the
census for shares, not the RSS. Example (docs/benchmarks.md, "What holds the memory"):

    HEAPPROBE=/tmp/heap PYTHONPATH=bench/heap .venv/bin/python -m bench.idle --rollouts 1000
    kill -USR2 <operator pid>
"""

from __future__ import annotations

import os
import sys

if os.environ.get("HEAPPROBE") and "ferryman" in getattr(sys, "orig_argv", []):
    import collections
    import gc
    import signal
    import tracemalloc
    from types import FrameType

    tracemalloc.start(int(os.environ.get("HEAPPROBE_FRAMES", "1")))

    def _census(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"traced current {current / 2**20:.1f} MiB peak {peak / 2**20:.1f} MiB"]
        for title, key in (("by file", "filename"), ("by line", "lineno")):
            lines.append(f"--- {title}")
            for stat in snapshot.statistics(key)[:40]:
                lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d} {stat.traceback}")
        lines.append("--- gc objects by type")
        types = collections.Counter(type(o).__name__ for o in gc.get_objects())
        lines += [f"{n:9d} {name}" for name, n in types.most_common(30)]
        path = os.path.join(os.environ["HEAPPROBE"], f"heap-{os.getpid()}.txt")
        with open(path, "w") as out:
            out.write("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR2, _census)
