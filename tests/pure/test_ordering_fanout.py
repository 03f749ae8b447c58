import threading
import time
from datetime import datetime, timezone

from lib.fanout import NotStarted, run_all
from lib.ordering import MAX_AHEAD, bounded_event_ts, is_stale, to_timestamp


def test_to_timestamp_formats():
    ts = 1700000000.5
    aware = datetime.fromtimestamp(ts, tz=timezone.utc)
    assert to_timestamp(aware) == ts
    assert to_timestamp(aware.replace(tzinfo=None)) == ts
    assert to_timestamp("2023-11-14T22:13:20.5Z") == ts
    assert to_timestamp("2023-11-14T22:13:20.500+00:00") == ts
    assert to_timestamp("1700000000.5") == ts
    assert to_timestamp(None) is None
    assert to_timestamp("not a date") is None


def test_is_stale():
    assert is_stale(99.0, 100.0)
    assert not is_stale(100.0, 100.0)
    assert not is_stale(101.0, 100.0)
    assert not is_stale(99.0, 100.0, skew=2)
    assert not is_stale(None, 100.0)
    assert not is_stale(50.0, None)


def test_run_all_is_concurrent_and_reports_errors():
    barrier = threading.Barrier(5, timeout=5)

    def ok(i):
        barrier.wait()  # deadlocks unless the five run at the same time
        return i * 2

    def boom():
        raise ValueError("channel said no")

    tasks = {i: (lambda i=i: ok(i)) for i in range(5)}
    tasks["bad"] = boom
    started = time.monotonic()
    out = run_all(tasks, max_workers=8)
    assert time.monotonic() - started < 5
    assert {k: v[0] for k, v in out.items() if k != "bad"} == {
        i: i * 2 for i in range(5)
    }
    assert isinstance(out["bad"][1], ValueError)


def test_run_all_single_task_inline():
    out = run_all({"only": lambda: threading.current_thread().name})
    assert out["only"] == (threading.current_thread().name, None)


def test_event_time_far_ahead_of_arrival_is_ordered_by_arrival():
    arrived = 1_800_000_000.25
    assert bounded_event_ts(arrived - 50, arrived) == arrived - 50
    assert bounded_event_ts(arrived + 120, arrived) == arrived + 120
    assert bounded_event_ts(arrived + MAX_AHEAD, arrived) == arrived + MAX_AHEAD
    year_9999 = to_timestamp("9999-12-31T23:59:59Z")
    assert bounded_event_ts(year_9999, arrived) == 1_800_000_000.0
    assert bounded_event_ts(None, arrived) is None
    # a later event is not stale behind a made-up date
    newest = bounded_event_ts(year_9999, arrived)
    assert not is_stale(bounded_event_ts(arrived + 5, arrived + 5), newest)
    # nor is the next one stamped to the second, in the same second
    assert not is_stale(1_800_000_000.0, newest)


def test_run_all_timeout_bounds_the_whole_wait():
    """Two tasks that hang: the quick one is answered, the others reported
    as timed out (and left to finish in their threads)."""
    release = threading.Event()
    tasks = {
        "quick": lambda: "done",
        "hang1": lambda: release.wait(5) and "late",
        "hang2": lambda: release.wait(5) and "late",
    }
    out = run_all(tasks, max_workers=4, timeout=0.3)
    release.set()
    assert out["quick"] == ("done", None)
    assert isinstance(out["hang1"][1], TimeoutError)
    assert isinstance(out["hang2"][1], TimeoutError)


def test_run_all_timeout_applies_to_a_single_task():
    release = threading.Event()
    out = run_all({"only": lambda: release.wait(5)}, timeout=0.2)
    release.set()
    assert isinstance(out["only"][1], TimeoutError)


def test_run_all_cancels_tasks_no_thread_took_up():
    """More tasks than threads: those still waiting for a thread when the
    wait ends are never sent (a late send would carry an old number) and
    are told apart from a channel that did not answer."""
    release = threading.Event()
    ran = []

    def hang(name):
        ran.append(name)
        release.wait(5)
        return name

    tasks = {n: (lambda n=n: hang(n)) for n in ("a", "b", "c", "d")}
    out = run_all(tasks, max_workers=2, timeout=0.3)
    release.set()
    time.sleep(0.2)
    started = [k for k, (_r, err) in out.items() if isinstance(err, TimeoutError)]
    queued = [k for k, (_r, err) in out.items() if isinstance(err, NotStarted)]
    assert sorted(started) == ["a", "b"] and sorted(queued) == ["c", "d"]
    assert sorted(ran) == ["a", "b"], "a cancelled task never runs"
