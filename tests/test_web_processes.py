"""`[web] processes = 2`: two forked waitress servers answer on one pre-bound port."""
import http.client
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


def established(port):
    """Socket inodes of the server side of established connections on `port`."""
    inodes = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        with open(table) as fh:
            for row in fh.readlines()[1:]:
                fields = row.split()
                if int(fields[1].rpartition(':')[2], 16) == port and fields[3] == '01':
                    inodes.add(fields[9])
    return inodes


def sockets_of(pid):
    inodes = set()
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    return inodes


def test_two_processes_answer_on_one_port(tmp_ini, redis_url):
    port = free_port()
    ini = tmp_ini(redis={'url': redis_url}, web={'port': str(port), 'processes': '2'})
    url = f'http://127.0.0.1:{port}'
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'web', '-c', ini])
    connections = []
    try:
        wait_http(url + '/healthz')
        first, second = wait_children(proc.pid, 2)
        for _ in range(16):                 # keep-alive connections, each answered once
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
            conn.request('GET', '/healthz')
            assert conn.getresponse().read() and conn.sock
            connections.append(conn)
        served = established(port)
        per_child = [len(served & sockets_of(pid)) for pid in (first, second)]
        assert sum(per_child) == 16 and min(per_child) > 0, per_child
        for conn in connections:
            conn.close()

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


def test_a_second_web_swarm_on_the_same_port_is_refused(tmp_ini, redis_url):
    port = free_port()
    ini = tmp_ini(redis={'url': redis_url}, web={'port': str(port), 'processes': '2'})
    first = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'web', '-c', ini])
    try:
        wait_http(f'http://127.0.0.1:{port}/healthz')
        second = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'web', '-c', ini])
        assert second.wait(20) == 2, read_log(second)
        assert f'cannot listen on 127.0.0.1:{port}' in read_log(second)
        assert "section 'web'" in read_log(second) or '[web]' in read_log(second)
    finally:
        assert stop_process(first) == 0


def test_run_serves_the_web_in_one_process_whatever_processes_says(tmp_ini, redis_url):
    """`mailq run` serves from a thread, where the web swarm could not set its signal
    handlers; [web] processes is for `mailq web` only, so `run` uses one and says so."""
    port = free_port()
    ini = tmp_ini(redis={'url': redis_url}, web={'port': str(port), 'processes': '2'})
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'run', '-c', ini, '-w', '1'])
    try:
        assert wait_http(f'http://127.0.0.1:{port}/api/openapi.json') == 200
        assert child_pids(proc.pid) == []               # no forked web servers
    finally:
        code = stop_process(proc, signal.SIGINT)
    log = read_log(proc)
    assert code == 0, log
    assert '[web] processes = 2 applies to `mailq web` only' in log
    assert 'Traceback' not in log and 'ValueError' not in log
