"""Running a sweep's tasks: on Ray (local by default, a cluster with `address`) or in a plain loop.

Each `Task` is one stage of one point (or of one cached unit of work: a config's Yosys run, a weight format's
accuracy) with its own resource request, so second-long model runs and hour-long Yosys runs share a cluster.
Results come back as they finish (`execute` calls `on_result` in the driver, which journals them), with a
tqdm progress bar and ETA on stderr.

Ray locally: `ray.init(num_cpus=workers)` with no dashboard, quiet logs and a small object store, shut down
when the sweep ends (also on Ctrl-C). Locally only CPUs are requested (the machine's free memory would make a
memory request a guess); on a cluster (`address`) each task also asks for its `memory`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import NamedTuple

from tqdm import tqdm

from dfx.errors import UsageError

ENGINES = ("ray", "loop")
OBJECT_STORE_BYTES = 100 * 2**20          # results are small dicts; Ray's minimum is 75 MiB


class Task(NamedTuple):
    kind: str                  # stage: perf, resources, accuracy, yosys, rtl
    key: str                   # journal key (config hash, format + method, ...)
    fn: Callable               # a module-level function (pickled by reference to the workers)
    args: tuple
    num_cpus: float = 1.0
    memory: int = 0            # bytes; requested on a cluster only


def _call(fn, args):
    return fn(*args)


def _ray_init(workers: int, address: str | None):
    """Start (or join) Ray; returns the module and whether this call started it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray  # lazy: optional (the `sweep` extra); the plain loop needs nothing
    except ImportError:
        raise UsageError("dfx sweep runs on Ray: pip install 'ray==2.60.0' (scripts/bootstrap.sh installs it), "
                         "or use --engine loop") from None
    if ray.is_initialized():
        return ray, False
    kw = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if address:
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(f"--address {address}: cannot join the Ray cluster ({' '.join(str(e).split())})") \
                from None
    else:
        ray.init(num_cpus=workers, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **kw)
    return ray, True


@contextlib.contextmanager
def ray_held(engine: str, workers: int, address: str | None):
    """Keep one Ray session across several `execute` calls (a search's batches): yields `start()`, which
    starts (or joins) Ray on its first call; shut down at the end if it was started here."""
    held = []

    def start():
        if engine == "ray" and not held:
            held.append(_ray_init(workers, address))
    try:
        yield start
    finally:
        if held and held[0][1]:
            held[0][0].shutdown()


def execute(tasks: list[Task], on_result: Callable[[Task, dict], None], engine: str = "ray", workers: int = 2,
            address: str | None = None, desc: str = "sweep", progress: bool = True) -> int:
    """Run `tasks`, calling `on_result(task, result)` in this process as each finishes (any order). Returns
    how many finished. A task whose worker dies gets {"status": "error", "reason": ...}."""
    if engine not in ENGINES:
        raise UsageError(f"engine {engine!r}: accepted {', '.join(ENGINES)}")
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"--workers must be an integer >= 1, not {workers!r}")
    bar = tqdm(total=len(tasks), desc=desc, unit="task", file=sys.stderr, disable=not progress or not tasks,
               dynamic_ncols=True)
    n = 0
    try:
        if engine == "loop" or not tasks:
            for t in tasks:
                on_result(t, t.fn(*t.args))
                n += 1
                bar.update()
            return n
        ray, started = _ray_init(workers, address)
        try:
            remote = ray.remote(_call)
            refs = {}
            for t in tasks:
                opts = {"num_cpus": t.num_cpus, "max_retries": 0, "name": f"{t.kind}:{t.key}"}
                if address and t.memory:
                    opts["memory"] = t.memory
                refs[remote.options(**opts).remote(t.fn, t.args)] = t
            while refs:
                done, _ = ray.wait(list(refs), num_returns=min(len(refs), 8), timeout=1.0)
                for ref in done:
                    t = refs.pop(ref)
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        res = {"status": "error", "reason": f"Ray: {' '.join(str(e).split())[:300]}"}
                    on_result(t, res)
                    n += 1
                    bar.update()
        finally:
            if started:
                ray.shutdown()
        return n
    finally:
        bar.close()
