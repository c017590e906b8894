"""The rules file watcher on real files in temporary directories.

Each test writes the file the way operators do (in place, atomic rename, Kubernetes
``..data`` symlink swap, ...) and waits for the callback, which must come within one second
of the write less the time this process was not run meanwhile (a busy machine: see
``support/timing.py``); the waits themselves give up only after ``GIVE_UP_S``. The measured
latencies are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastapi_ratelimits.ops.reload import FileWatcher
from support.timing import StallMeter

DEADLINE_S = 1.0  # the contract: new rules in force within one second (of the process's own time)
GIVE_UP_S = 30.0  # how long a wait goes on before it fails: a failure bound, not a speed claim
METER: list[StallMeter] = []


@pytest.fixture(scope="module", autouse=True)
def stall_meter() -> Iterator[StallMeter]:
    with StallMeter() as meter:
        METER.append(meter)
        yield meter
        METER.remove(meter)


def ran_for(since: float, until: float) -> float:
    """The seconds from ``since`` to ``until`` less the time this process was not run."""
    return max(0.0, until - since - METER[0].between(since, until))


class Recorder:
    """An on_change callback that records when it ran and what the file held then."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[tuple[float, str | None]] = []

    async def __call__(self) -> None:
        try:
            text: str | None = self.path.read_text()
        except FileNotFoundError:
            text = None
        self.calls.append((time.monotonic(), text))

    async def wait_for_missing(self, since: float) -> None:
        while not any(at >= since and text is None for at, text in self.calls):
            if time.monotonic() - since > GIVE_UP_S:
                raise AssertionError(f"no callback for the deletion within {GIVE_UP_S}s; calls: {self.calls}")
            await asyncio.sleep(0.002)
        at = min(at for at, text in self.calls if at >= since and text is None)
        assert ran_for(since, at) < DEADLINE_S, f"the deletion called back {at - since:.3f}s after it"

    async def wait_for(self, predicate_text: str, since: float, what: str) -> float:
        """Wait for a call that saw ``predicate_text``: it must come within DEADLINE_S of
        ``since``, less the time this process was not run meanwhile."""
        while True:
            for at, text in self.calls:
                if at >= since and text == predicate_text:
                    latency = at - since
                    ran = ran_for(since, at)
                    print(f"\n  watcher latency [{what}]: {latency * 1000:.1f} ms")
                    assert ran < DEADLINE_S, (f"{what}: the callback came {latency:.3f}s after the write "
                                              f"({ran:.3f}s while this process ran)")
                    return latency
            if time.monotonic() - since > GIVE_UP_S:
                raise AssertionError(f"{what}: no callback seeing {predicate_text!r} within {GIVE_UP_S}s; "
                                     f"calls: {self.calls}")
            await asyncio.sleep(0.002)


async def wait_batches(watcher: FileWatcher, more_than: int, within: float = GIVE_UP_S) -> None:
    """Wait until the watcher has looked at a new batch of events, then at a quiet tick
    (so every event of the burst has been checked; a change found is counted before)."""
    deadline = time.monotonic() + within
    while watcher.batches_seen <= more_than:
        if time.monotonic() > deadline:
            raise AssertionError("the watcher never looked at the event")
        await asyncio.sleep(0.002)
    ticks = watcher.ticks_seen
    while watcher.ticks_seen <= ticks:
        if time.monotonic() > deadline:
            raise AssertionError("the watcher never went quiet")
        await asyncio.sleep(0.002)


async def started(path: Path, rec: Recorder, **kw: int) -> FileWatcher:
    w = FileWatcher(path, rec, **kw)
    await w.start()
    await asyncio.wait_for(w.wait_ready(), GIVE_UP_S)
    return w


def write_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def test_in_place_write_calls_back_within_a_second(tmp_path: Path) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("version: 1\n")
    rec = Recorder(f)
    w = await started(f, rec)
    try:
        for i in range(3):
            t = time.monotonic()
            write_in_place(f, f"version: 1  # edit {i}\n")
            await rec.wait_for(f"version: 1  # edit {i}\n", t, f"in-place write #{i}")
        assert [text for _, text in rec.calls][-1] == "version: 1  # edit 2\n"
    finally:
        await w.stop()


async def test_atomic_rename_calls_back_within_a_second(tmp_path: Path) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("v0")
    rec = Recorder(f)
    w = await started(f, rec)
    try:
        for i in range(3):  # the inode changes every time: the watch must follow the name
            t = time.monotonic()
            write_atomically(f, f"v{i + 1}")
            await rec.wait_for(f"v{i + 1}", t, f"atomic rename #{i}")
    finally:
        await w.stop()


def k8s_publish(configmap_dir: Path, version: str, text: str) -> None:
    """What the kubelet's atomic writer does for a ConfigMap volume."""
    data_dir = configmap_dir / f"..{version}"
    data_dir.mkdir()
    (data_dir / "ratelimits.yaml").write_text(text)
    old = os.readlink(configmap_dir / "..data") if (configmap_dir / "..data").is_symlink() else None
    tmp_link = configmap_dir / "..data_tmp"
    os.symlink(data_dir.name, tmp_link)
    os.replace(tmp_link, configmap_dir / "..data")  # the atomic swap
    if not (configmap_dir / "ratelimits.yaml").is_symlink():
        os.symlink("..data/ratelimits.yaml", configmap_dir / "ratelimits.yaml")
    if old is not None:
        shutil.rmtree(configmap_dir / old)


async def test_kubernetes_symlink_swap_calls_back_within_a_second(tmp_path: Path) -> None:
    cm = tmp_path / "config"
    cm.mkdir()
    k8s_publish(cm, "2026_01_01_00_00_00.1", "first")
    f = cm / "ratelimits.yaml"
    rec = Recorder(f)
    w = await started(f, rec)
    try:
        for i, text in enumerate(["second", "third", "fourth"], start=2):
            t = time.monotonic()
            k8s_publish(cm, f"2026_01_01_00_00_00.{i}", text)
            await rec.wait_for(text, t, f"..data symlink swap #{i - 1}")
        assert f.read_text() == "fourth"
    finally:
        await w.stop()


async def test_in_place_write_to_a_symlink_target_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "limits.yaml"
    target.write_text("a")
    link = tmp_path / "app" / "ratelimits.yaml"
    os.symlink(target, link)
    rec = Recorder(link)
    w = await started(link, rec)
    try:
        t = time.monotonic()
        write_in_place(target, "b")  # nothing happens in the link's own directory
        await rec.wait_for("b", t, "write to symlink target")
    finally:
        await w.stop()


async def test_deleted_file_keeps_quiet_and_its_return_calls_back(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("rules")
    rec = Recorder(f)
    w = await started(f, rec)
    try:
        before = w.batches_seen
        with caplog.at_level(logging.WARNING, logger="fastapi_ratelimits.reload"):
            f.unlink()
            await wait_batches(w, before)
        assert rec.calls == [] and w.changes_reported == 0  # the last rules stay in force
        assert any("is gone" in r.getMessage() for r in caplog.records)
        t = time.monotonic()
        f.write_text("rules again")
        await rec.wait_for("rules again", t, "recreated after deletion")
    finally:
        await w.stop()


async def test_call_on_missing_calls_back_once_per_disappearance(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("rules")
    rec = Recorder(f)
    w = FileWatcher(f, rec, call_on_missing=True)
    await w.start()
    await w.wait_ready()
    try:
        with caplog.at_level(logging.WARNING, logger="fastapi_ratelimits.reload"):
            t = time.monotonic()
            f.unlink()
            await rec.wait_for_missing(t)
            before, deadline = w.ticks_seen, time.monotonic() + 5
            while w.ticks_seen < before + 3:  # the file stays gone for several looks
                assert time.monotonic() < deadline, "the watcher stopped looking"
                await asyncio.sleep(0.005)
        assert [text for _, text in rec.calls] == [None]  # once, not once per look
        assert not any("is gone" in r.getMessage() for r in caplog.records)  # the callback says it
        t = time.monotonic()
        f.write_text("rules")  # back with the same bytes: still a call, the callback clears its error
        await rec.wait_for("rules", t, "back after deletion")
    finally:
        await w.stop()


async def test_unrelated_files_and_touches_do_not_call_back(tmp_path: Path) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("same")
    rec = Recorder(f)
    w = await started(f, rec)
    try:
        before = w.batches_seen
        (tmp_path / "app.log").write_text("noise")
        (tmp_path / "ratelimits.yaml.swp").write_text("editor swap file")
        os.utime(f)  # mtime changes, content does not
        write_atomically(f, "same")  # new inode, same bytes
        await wait_batches(w, before)
        assert w.changes_reported == 0
        assert rec.calls == []
        t = time.monotonic()
        write_in_place(f, "different")  # and it still sees real changes
        await rec.wait_for("different", t, "real change after noise")
    finally:
        await w.stop()


async def test_a_burst_of_writes_is_coalesced_and_the_last_version_wins(tmp_path: Path) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("v0")
    running = 0
    overlapped = False
    rec = Recorder(f)

    async def slow_callback() -> None:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        await rec()
        await asyncio.sleep(0.02)  # a reload takes a little time; callbacks must not overlap
        running -= 1

    w = FileWatcher(f, slow_callback)
    await w.start()
    await w.wait_ready()
    try:
        t = 0.0
        first = time.monotonic()
        for i in range(20):  # about 40-60 ms of writes, as a sync tool or a slow editor does
            write_in_place(f, f"v{i + 1}")
            t = time.monotonic()
            await asyncio.sleep(0.002)
        await rec.wait_for("v20", t, "burst of 20 writes, from the last write")
        burst_s = t - first
        print(f"  burst of 20 writes over {burst_s * 1000:.0f} ms -> {len(rec.calls)} callback(s)")
        # At most one callback per debounce window (50 ms) of the burst, and one for its end.
        # (a busy machine spreads the writes out, and so lets more windows through)
        assert 1 <= len(rec.calls) <= 2 + int(burst_s / 0.05)
        assert not overlapped
    finally:
        await w.stop()


async def test_a_write_right_after_start_is_not_lost(tmp_path: Path) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("old")
    rec = Recorder(f)
    w = FileWatcher(f, rec)
    await w.start()  # no wait_ready: the write may land before the notifications are armed
    try:
        t = time.monotonic()
        write_in_place(f, "new")
        await rec.wait_for("new", t, "write right after start")
    finally:
        await w.stop()


async def test_a_missing_directory_is_waited_for(tmp_path: Path) -> None:
    d = tmp_path / "not-yet"
    f = d / "ratelimits.yaml"
    rec = Recorder(f)
    w = await started(f, rec)
    try:
        d.mkdir()
        t = time.monotonic()
        f.write_text("arrived")
        await rec.wait_for("arrived", t, "directory created after start")
    finally:
        await w.stop()


async def test_a_failing_callback_is_logged_and_the_watcher_goes_on(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("0")
    rec = Recorder(f)
    fail = True

    async def callback() -> None:
        await rec()
        if fail:
            raise RuntimeError("reload exploded")

    w = FileWatcher(f, callback)
    await w.start()
    await w.wait_ready()
    try:
        with caplog.at_level(logging.ERROR, logger="fastapi_ratelimits.reload"):
            t = time.monotonic()
            write_in_place(f, "1")
            await rec.wait_for("1", t, "first (failing) callback")
            deadline = time.monotonic() + GIVE_UP_S
            while not any("reload callback failed" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the failure was not logged"
                await asyncio.sleep(0.002)
        fail = False
        t = time.monotonic()
        write_in_place(f, "2")
        await rec.wait_for("2", t, "callback after a failure")
    finally:
        await w.stop()


async def test_stop_leaves_no_task_or_thread_and_is_idempotent(tmp_path: Path) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("x")
    threads_before = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    rec = Recorder(f)
    w = await started(f, rec)
    assert w.running
    assert set(threading.enumerate()) - threads_before, "the watch thread should be running"
    assert asyncio.all_tasks() - tasks_before, "the dispatch task should be running"
    write_in_place(f, "y")
    await rec.wait_for("y", time.monotonic() - 0.001, "before stop")
    t = time.monotonic()
    await w.stop()
    done = time.monotonic()
    stop_s = done - t
    print(f"\n  stop() took {stop_s * 1000:.1f} ms")
    assert ran_for(t, done) < 0.5, stop_s  # less the time this process was not run
    assert not w.running
    assert set(threading.enumerate()) == threads_before
    assert asyncio.all_tasks() == tasks_before
    await w.stop()  # idempotent
    # Stopped means stopped: a later change does not call back.
    write_in_place(f, "z")
    await asyncio.sleep(0.2)
    assert [text for _, text in rec.calls] == ["y"]
    # And it can be started again.
    await w.start()
    try:
        t = time.monotonic()
        write_in_place(f, "again")
        await rec.wait_for("again", t, "after restart")
    finally:
        await w.stop()
    assert set(threading.enumerate()) == threads_before
    assert asyncio.all_tasks() == tasks_before


async def test_stop_cancels_a_callback_in_progress(tmp_path: Path) -> None:
    f = tmp_path / "ratelimits.yaml"
    f.write_text("x")
    entered = asyncio.Event()

    async def never_ends() -> None:
        entered.set()
        await asyncio.Event().wait()

    tasks_before = asyncio.all_tasks()
    w = FileWatcher(f, never_ends)
    await w.start()
    await w.wait_ready()
    write_in_place(f, "y")
    await asyncio.wait_for(entered.wait(), GIVE_UP_S)
    await asyncio.wait_for(w.stop(), 10.0)  # it is cancelled, not waited for (a failure bound)
    assert asyncio.all_tasks() == tasks_before
