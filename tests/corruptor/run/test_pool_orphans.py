"""Local pool workers die with their driver: a killed build leaves no process behind."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")

DRIVER = textwrap.dedent("""
    import sys, time
    from corruptor.run.registry import run_tasks
    from corruptor.run.runner import RunnerSettings

    if __name__ == "__main__":
        # Long tasks: an orphaned worker would still be busy (then idle, forever) long after the test.
        run_tasks([60.0] * 8, time.sleep, runner="local", settings=RunnerSettings(workers=2, retries=0))
""")


def _children(pid: int) -> list[int]:
    """Live pool workers (spawn_main) whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")   # a zombie has exited; only its reaper is missing


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_pool_workers_exit_when_the_driver_is_killed(tmp_path, sig):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[3]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _children(proc.pid)
        assert len(workers) == 2, "the pool did not start two workers"
        time.sleep(1.0)                       # workers are inside their tasks now
        os.kill(proc.pid, sig)                # the driver only, as the OOM killer or `kill` would
        proc.wait(timeout=30)
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "pool workers outlived their driver"
    finally:
        for w in workers:                     # only the processes this test started
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_a_worker_whose_driver_is_already_gone_exits_at_once():
    # The race the parent-death signal cannot cover: the driver died before it was armed.
    code = "from corruptor.run.local import _die_with_parent; _die_with_parent(1); print('alive')"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "alive" not in done.stdout
