"""Map a function over jobs: in local processes (the default) or as tasks on a Ray cluster.

Collection and evaluation share this. Every job is seeded, so where a job runs does not change its
result; each result comes back with the node that ran it (the Ray node id, or `local:<host>`).
On Ray, `fn`, the initializer and the jobs are pickled by reference to their modules: the nodes
need the same dreamops installed (the same image or virtual environment).
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import pickle
import socket
import tempfile
import threading
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
    running `initializer(*initargs)` once per call (the processes are kept for the next call:
    `shutdown_pool`). On Ray (`ray_address` set): one task per job, 1 CPU
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


# --- local processes: one pool per process, kept between map calls ---
#
# Starting a pool of spawned processes costs ~1.5 s a worker here (each imports torch, gymnasium and
# dreamops), and a training run maps dozens of times (every round collects and validates each
# checkpoint): the pool is started once and kept. Each map call is a "call" (fn, initializer,
# initargs) pickled once to a file; a worker runs the initializer of a call the first time it meets
# one of its jobs, as a Ray worker does (_run_on_node). Jobs are seeded, so which worker runs them
# does not change their results.

_local_pool: ProcessPoolExecutor | None = None
_local_workers = 0
_local_users: dict[int, int] = {}  # id of a kept pool -> map calls using it now
_pool_lock = threading.Lock()
_worker_call: tuple[str, Callable] | None = None  # in a pool worker: the call whose initializer ran here


@contextlib.contextmanager
def _pool_for(workers: int) -> Iterator[ProcessPoolExecutor]:
    """The kept pool, with at least `workers` processes: a bigger request replaces it when no other
    call is using it, else gets a pool of its own for this call (another thread's map keeps its jobs)."""
    global _local_pool, _local_workers
    with _pool_lock:
        if _local_pool is not None and _broken(_local_pool):
            _local_pool = None  # its processes are gone; a call still using it gets its error
        if _local_pool is not None and _local_workers < workers and not _local_users.get(id(_local_pool)):
            _local_pool.shutdown(wait=True)
            _local_pool = None
        if _local_pool is None:
            _local_pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
            _local_workers = workers
        pool = _local_pool if _local_workers >= workers else None
        if pool is not None:
            _local_users[id(pool)] = _local_users.get(id(pool), 0) + 1
    if pool is not None:
        try:
            yield pool
        finally:
            with _pool_lock:
                _local_users[id(pool)] -= 1
                if not _local_users[id(pool)]:
                    del _local_users[id(pool)]
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _broken(pool: ProcessPoolExecutor) -> bool:
    return bool(getattr(pool, "_broken", False))


def shutdown_pool() -> None:
    """Stop the kept worker processes (they also stop when this process exits)."""
    global _local_pool
    with _pool_lock:
        if _local_pool is not None:
            _local_pool.shutdown(wait=True, cancel_futures=True)
            _local_pool = None


def _run_local(key: str, call_file: str, item):
    """Runs in a pool worker: the call's initializer once per worker and call, then the job."""
    global _worker_call
    if _worker_call is None or _worker_call[0] != key:
        with open(call_file, "rb") as f:
            fn, initializer, initargs = pickle.load(f)
        _worker_call = None
        if initializer:
            initializer(*initargs)
        _worker_call = (key, fn)
    return _worker_call[1](item)


def _pool(fn, items, workers, initializer, initargs) -> Iterator[Done]:
    key = uuid.uuid4().hex
    with _pool_for(workers) as pool, tempfile.NamedTemporaryFile(prefix="dreamops-call-", suffix=".pkl") as call_file:
        pickle.dump((fn, initializer, initargs), call_file, protocol=pickle.HIGHEST_PROTOCOL)
        call_file.flush()
        pending = {pool.submit(_run_local, key, call_file.name, item): i for i, item in enumerate(items)}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield Done(pending.pop(fut), fut.result(), LOCAL_NODE)
        finally:  # on failure (or a caller that stops early): do not run the queued jobs, wait for the running
            for fut in pending:
                fut.cancel()
            wait(pending)


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
