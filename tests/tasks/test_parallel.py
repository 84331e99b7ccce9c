"""The local worker pool: kept between map calls, each call's initializer run where its jobs run."""
import os
import time

import pytest

from dreamops.tasks import parallel

_tag = None


def _set_tag(tag):
    global _tag
    _tag = tag


def _job(x):
    return _tag, x * x, os.getpid()


def _fail_on_three(x):
    if x == 3:
        raise ValueError("job 3 failed")
    return x


def test_the_pool_is_kept_and_each_call_runs_its_own_initializer():
    first = parallel.map_jobs(_job, range(6), 2, "first", initializer=_set_tag, initargs=("a",), show_progress=False)
    second = parallel.map_jobs(_job, range(6), 2, "second", initializer=_set_tag, initargs=("b",), show_progress=False)
    assert [d.result[:2] for d in first] == [("a", x * x) for x in range(6)]
    assert [d.result[:2] for d in second] == [("b", x * x) for x in range(6)]  # not the first call's state
    pids = {d.result[2] for d in first + second}
    assert os.getpid() not in pids and len(pids) <= 2  # the same two processes served both calls


def test_a_failing_job_raises_and_the_pool_serves_the_next_call():
    with pytest.raises(ValueError, match="job 3 failed"):
        parallel.map_jobs(_fail_on_three, range(8), 2, "fails", show_progress=False)
    assert [d.result for d in parallel.map_jobs(_fail_on_three, [1, 2], 2, "after", show_progress=False)] == [1, 2]


def test_a_broken_pool_is_replaced():
    """A worker killed from outside (OOM killer, a crash in a native library) breaks the pool: the
    next call must not fail on it but start new processes."""
    parallel.map_jobs(_job, range(2), 2, "warm", initializer=_set_tag, initargs=("c",), show_progress=False)
    pool = parallel._local_pool
    old = set(pool._processes)
    for pid in old:
        os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while not parallel._broken(pool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert parallel._broken(pool)
    again = parallel.map_jobs(_job, range(4), 2, "again", initializer=_set_tag, initargs=("d",), show_progress=False)
    assert [d.result[:2] for d in again] == [("d", x * x) for x in range(4)]
    assert not {d.result[2] for d in again} & old


def test_a_call_needing_more_workers_while_the_pool_is_in_use_gets_its_own():
    """Another thread's map keeps the kept pool (and its jobs); the bigger call runs beside it."""
    first = parallel.imap_jobs(_job, range(4), 2, "in use", initializer=_set_tag, initargs=("e",), show_progress=False)
    done = [next(first)]  # the first call now holds the kept pool
    kept = parallel._local_pool
    bigger = parallel.map_jobs(_job, range(6), 3, "bigger", initializer=_set_tag, initargs=("f",), show_progress=False)
    assert [d.result[:2] for d in bigger] == [("f", x * x) for x in range(6)]
    done += list(first)
    assert sorted(d.result[:2] for d in done) == [("e", x * x) for x in range(4)]
    assert parallel._local_pool is kept  # not replaced under the first call


def test_shutdown_stops_the_kept_processes_and_the_next_call_starts_new_ones():
    before = {d.result[2] for d in parallel.map_jobs(_job, range(4), 2, "a", initializer=_set_tag, initargs=("g",),
                                                     show_progress=False)}
    parallel.shutdown_pool()
    assert parallel._local_pool is None
    after = {d.result[2] for d in parallel.map_jobs(_job, range(4), 2, "b", initializer=_set_tag, initargs=("h",),
                                                    show_progress=False)}
    assert not before & after
