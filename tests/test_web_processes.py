"""`[web] processes = 2`: two forked waitress servers answer on one pre-bound port."""
import os
import signal
import time
import urllib.request

from support.procs import PYTHON, REPO_ROOT, free_port, read_log, start_process, stop_process
from support.procs import wait_http


def child_pids(parent):
    pids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as fh:
                    fields = fh.read().rpartition(')')[2].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != 'Z':
                pids.append(int(entry))
    return sorted(pids)


def wait_children(parent, count, timeout=20):
    deadline = time.monotonic() + timeout
    while len(child_pids(parent)) != count:
        assert time.monotonic() < deadline, child_pids(parent)
        time.sleep(0.05)
    return child_pids(parent)


def healthz(url):
    with urllib.request.urlopen(url + '/healthz', timeout=5) as resp:
        return resp.status


def test_two_processes_answer_on_one_port(tmp_ini, redis_url):
    port = free_port()
    ini = tmp_ini(redis={'url': redis_url}, web={'port': str(port), 'processes': '2'})
    url = f'http://127.0.0.1:{port}'
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'web', '-c', ini])
    try:
        wait_http(url + '/healthz')
        first, second = wait_children(proc.pid, 2)
        for stopped, serving in ((first, second), (second, first)):
            os.kill(stopped, signal.SIGSTOP)        # only `serving` can accept now
            try:
                assert [healthz(url) for _ in range(5)] == [200] * 5
            finally:
                os.kill(stopped, signal.SIGCONT)

        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while first in child_pids(proc.pid) or len(child_pids(proc.pid)) != 2:
            assert time.monotonic() < deadline, read_log(proc)
            time.sleep(0.05)
        assert healthz(url) == 200
    finally:
        code = stop_process(proc)
    assert code == 0, read_log(proc)
    assert f'(pid {first}) died (signal 9); restarting' in read_log(proc)
    assert child_pids(proc.pid) == []
