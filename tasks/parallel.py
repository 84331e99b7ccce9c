"""Map a function over jobs: in local processes (the default) or as tasks on a Ray cluster.

Collection and evaluation share this. Every job is seeded, so where a job runs does not change its
result; each result comes back with the node that ran it (the Ray node id, or `local:<host>`).
On Ray, `fn`, the initializer and the jobs are pickled by reference to their modules: the nodes
need the same dreamops installed (the same image or virtual environment).
"""
from __future__ import annotations

import multiprocessing as mp
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Generic, NamedTuple, TypeVar

from dreamops.tasks.common import progress

T = TypeVar("T")
R = TypeVar("R")

LOCAL_NODE = f"local:{socket.gethostname()}"


class Done(NamedTuple, Generic[R]):
    index: int  # position of the job in the input
    result: R
    node: str  # the node that ran it


def imap_jobs(fn: Callable[[T], R], items: Iterable[T], workers: int, desc: str,
              initializer: Callable[..., Any] | None = None, initargs: tuple = (),
              show_progress: bool = True, ray_address: str | None = None) -> Iterator[Done[R]]:
    """Yields each job's result as it finishes (any order), so callers can write results away
    instead of holding them all. Locally: `workers` spawned processes (in-process when 1), each
    running `initializer(*initargs)` once. On Ray (`ray_address` set): one task per job, 1 CPU
    each, as many at once as the cluster has CPUs; `workers` is ignored. A failing job raises here
    and the jobs not yet started are cancelled."""
    items = list(items)
    where = f" on Ray at {ray_address}" if ray_address else ""
    with progress(show_progress) as bar:
        task = bar.add_task(desc + where, total=len(items), status="")
        if ray_address:
            done = _ray(fn, items, initializer, initargs, ray_address)
        elif workers <= 1:
            done = _in_process(fn, items, initializer, initargs)
        else:
            done = _pool(fn, items, workers, initializer, initargs)
        for d in done:
            bar.advance(task)
            yield d


def map_jobs(fn: Callable[[T], R], items: Iterable[T], workers: int, desc: str,
             initializer: Callable[..., Any] | None = None, initargs: tuple = (),
             show_progress: bool = True, ray_address: str | None = None) -> list[Done[R]]:
    """imap_jobs, gathered in input order."""
    return sorted(imap_jobs(fn, items, workers, desc, initializer, initargs, show_progress, ray_address),
                  key=lambda d: d.index)


def _in_process(fn, items, initializer, initargs) -> Iterator[Done]:
    if initializer:
        initializer(*initargs)
    for i, item in enumerate(items):
        yield Done(i, fn(item), LOCAL_NODE)


def _pool(fn, items, workers, initializer, initargs) -> Iterator[Done]:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
    try:
        pending = {pool.submit(fn, item): i for i, item in enumerate(items)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield Done(pending.pop(fut), fut.result(), LOCAL_NODE)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on failure: do not run the queued jobs


# --- Ray ---

_connected: str | None = None  # the address this process is connected to
_initialized: str | None = None  # in a Ray worker: the map call whose initializer has run here


def connect(address: str):
    """Connect this process to the Ray cluster at `address` (once; a new address reconnects)."""
    global _connected
    import ray

    if ray.is_initialized() and _connected != address:
        ray.shutdown()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)  # worker logs stay in the cluster's session dir
        _connected = address
    return ray


def _run_on_node(call: tuple, item):
    """Runs in a Ray worker process. Workers are reused across tasks, so the initializer (e.g.
    building a policy and a simulator) runs once per worker and map call, as in a local pool."""
    global _initialized
    import ray

    key, fn, initializer, initargs = call
    if initializer and _initialized != key:
        initializer(*initargs)
        _initialized = key
    return fn(item), ray.get_runtime_context().get_node_id()


def _ray(fn, items, initializer, initargs, address) -> Iterator[Done]:
    ray = connect(address)
    remote = ray.remote(num_cpus=1)(_run_on_node)  # retried by Ray if a worker process dies
    call = ray.put((uuid.uuid4().hex, fn, initializer, initargs))  # shipped once, not once per job
    pending = {remote.remote(call, item): i for i, item in enumerate(items)}
    try:
        while pending:
            ray.wait(list(pending), num_returns=1)  # block for one, then take all that are ready
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:
                result, node = ray.get(ref)
                yield Done(pending.pop(ref), result, node)
    finally:
        for ref in pending:  # on failure: do not run the jobs still queued
            ray.cancel(ref)
