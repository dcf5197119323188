"""Server processes of the development infrastructure, with plain `sleep` processes standing
in for the servers: recognised by pid and start time, stopped politely, and stopped by the
warden once the process that started them is gone."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psutil

from stoker.devinfra import procs, warden
from stoker.devinfra.layout import StateLayout
from stoker.devinfra.manager import DevInfra, run_sync

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
WAIT_S = 60.0


def _sleeper(layout: StateLayout, name: str) -> procs.ProcessRef:
    """A stand-in server of `layout`, recorded in its pid file as `up` records servers."""
    ref = procs.launch(SLEEPER, cwd=layout.root, log_file=layout.log_file(name))
    procs.write_pid_file(layout.pid_file(name), ref)
    return ref


def test_a_process_is_known_by_pid_and_start_time(tmp_path: Path) -> None:
    """The same pid with another start time is another process: not alive, never signalled."""
    layout = StateLayout(tmp_path)
    ref = _sleeper(layout, "server")
    try:
        assert procs.is_alive(ref)
        impostor = procs.ProcessRef(pid=ref.pid, create_time=ref.create_time - 3600)
        assert not procs.is_alive(impostor)
        assert run_sync(procs.stop(impostor, grace_s=1)) is True  # nothing of ours to stop
        assert procs.is_alive(ref)
    finally:
        assert run_sync(procs.stop(ref, grace_s=WAIT_S)) is True
    assert not procs.is_alive(ref)


def test_down_stops_every_server_of_the_folder(tmp_path: Path) -> None:
    """`down` stops the recorded servers within their grace and removes their pid files."""
    layout = StateLayout(tmp_path)
    refs = [_sleeper(layout, "kafka-1"), _sleeper(layout, "dynamodb")]
    results = run_sync(DevInfra(tmp_path).down(grace_s=WAIT_S))
    assert sorted((r.name, r.graceful) for r in results) == [("dynamodb", True), ("kafka-1", True)]
    assert not any(procs.is_alive(ref) for ref in refs)
    assert list(layout.pid_dir.glob("*.pid")) == []


def test_the_warden_stops_the_servers_once_their_owner_is_gone(tmp_path: Path) -> None:
    """The owner (here a process of its own) is SIGKILLed, so its cleanup never runs: the
    warden notices, stops the folder's servers and exits."""
    layout = StateLayout(tmp_path)
    owner = subprocess.Popen(SLEEPER)
    try:
        owner_ref = procs.ProcessRef(pid=owner.pid, create_time=_started(owner.pid))
        watcher = warden.ensure(layout, owner_ref)
        server = _sleeper(layout, "dynamodb")
        assert procs.is_alive(watcher)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert procs.wait_gone_blocking(server, WAIT_S), layout.log_file("warden").read_text()
    assert procs.wait_gone_blocking(watcher, WAIT_S)
    assert not layout.pid_file("dynamodb").exists()
    assert "stopped dynamodb" in layout.log_file("warden").read_text()


def test_down_by_the_owner_stops_the_warden_too(tmp_path: Path) -> None:
    """A folder started with die_with_caller has one warden; the owner's own `down` stops
    it along with the servers, so nothing of the folder keeps running."""
    layout = StateLayout(tmp_path)
    watcher = warden.ensure(layout)
    assert warden.ensure(layout) == watcher, "one warden per folder"
    server = _sleeper(layout, "dynamodb")
    run_sync(DevInfra(tmp_path).down(grace_s=WAIT_S))
    assert not procs.is_alive(watcher)
    assert not procs.is_alive(server)
    assert not layout.warden_pid_file.exists()


def _started(pid: int) -> float:
    return psutil.Process(pid).create_time()
