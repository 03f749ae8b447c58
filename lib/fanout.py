"""Publish to many channels at once from one job.

One stock change of one SKU must reach 30+ channels in well under a second.
A queue_job job costs tens of milliseconds of dispatching before any HTTP is
sent, so the SKU job publishes to all of its channels itself, concurrently, on
a bounded pool of threads shared by the process. Each task is a plain callable
(an adapter call with plain values); no Odoo environment crosses a thread.
"""

import os
import queue
import threading
import time
from concurrent.futures import Executor, Future

_state = {"pool": None, "size": None, "lock": threading.Lock()}

#: threads of the process-wide pool: a SKU's job sends to each of its
#: channels at once, so the pool holds more channels than a SKU is sold on
DEFAULT_WORKERS = 64


class NotStarted(Exception):
    """A task still waiting for a thread when the wait ended: never sent
    (cancelled), so its channel is not to blame: it is tried again soon."""


class DaemonPool(Executor):
    """A bounded pool of daemon threads, for tasks the process may abandon.

    ``ThreadPoolExecutor`` joins its threads when the interpreter exits,
    after running every task still queued: one channel call that does not
    end would keep the process (an Odoo worker being recycled, a script)
    from exiting. A task still running here when the process ends ends
    with it; :func:`run_all` has already reported it as not answered.
    """

    def __init__(self, max_workers, thread_name_prefix="pool"):
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._queue = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.put((future, fn, args, kwargs))
            # a thread waiting for work takes it; else start one, up to the cap
            if not self._idle.acquire(blocking=False) and (
                len(self._threads) < self._max_workers
            ):
                thread = threading.Thread(
                    target=self._work,
                    name=f"{self._prefix}_{len(self._threads)}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        return future

    def _work(self):
        while True:
            item = self._queue.get()
            if item is None:  # shut down: pass the word on to the next thread
                self._queue.put(None)
                return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as err:  # noqa: BLE001 - for the caller
                    future.set_exception(err)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()


def get_pool(max_workers=DEFAULT_WORKERS):
    """The process-wide pool, created on first use (after any fork)."""
    with _state["lock"]:
        if _state["pool"] is None or _state["size"] != max_workers:
            old = _state["pool"]
            _state["pool"] = DaemonPool(
                max_workers=max_workers, thread_name_prefix="stock_channel_sync"
            )
            _state["size"] = max_workers
            if old is not None:
                old.shutdown(wait=False)
        return _state["pool"]


def _forget_pool_after_fork():
    """A forked child has none of its parent's threads: the pool it inherits
    would queue tasks that nothing runs. The child makes its own."""
    # a lock held by a thread of the parent at the fork would stay held
    _state["lock"] = threading.Lock()
    _state["pool"] = None
    _state["size"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def run_all(tasks, max_workers=None, timeout=None):
    """Run ``{key: callable}`` concurrently; return ``{key: (result, error)}``.

    Every task gets an answer: its return value, or the exception it raised.
    A single task runs inline (no thread hop for the common one-channel case).
    ``timeout`` bounds the wait for all tasks together (seconds from the
    call); a task still running then is reported with a ``TimeoutError``
    and left to finish in its thread (adapters carry their own HTTP
    timeouts). A task that no thread took up by then is cancelled and
    reported with ``NotStarted``: started late, it would send an old
    number after newer ones, and its channel, which was never asked, would
    be taken for one that did not answer. With a timeout, a single task
    runs in the pool too. ``max_workers``: the pool's size
    (``DEFAULT_WORKERS``).
    """
    max_workers = max_workers or DEFAULT_WORKERS
    outcomes = {}
    if not tasks:
        return outcomes
    if len(tasks) == 1 and timeout is None:
        key, func = next(iter(tasks.items()))
        try:
            outcomes[key] = (func(), None)
        except Exception as err:  # noqa: BLE001 - reported to the caller
            outcomes[key] = (None, err)
        return outcomes
    pool = get_pool(max_workers)
    deadline = time.monotonic() + timeout if timeout is not None else None
    futures = {key: pool.submit(func) for key, func in tasks.items()}
    for key, future in futures.items():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            outcomes[key] = (future.result(timeout=left), None)
        except TimeoutError as err:
            if future.cancel():
                outcomes[key] = (
                    None,
                    NotStarted(f"not started within {timeout} s: every thread busy"),
                )
            else:
                outcomes[key] = (None, err)
        except Exception as err:  # noqa: BLE001 - reported to the caller
            outcomes[key] = (None, err)
    return outcomes
