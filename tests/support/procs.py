"""Process helpers: start the real mailq processes and wait for them."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def children(pid):
    """The pids of a process's children (Linux /proc)."""
    found = set()
    for task in os.listdir(f'/proc/{pid}/task'):
        with open(f'/proc/{pid}/task/{task}/children') as f:
            found |= {int(p) for p in f.read().split()}
    return found


def free_port():
    """Ask the kernel for an unused port (tiny race, good enough for tests)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_process(args, env=None, cwd=REPO_ROOT):
    """Popen with output in a log file (a pipe nobody reads would block it).

    The process gets its own group so stop_process can signal its children.
    The log path is kept on the object as `p.log_path`; `read_log(p)` reads it.
    """
    log_dir = tempfile.mkdtemp(prefix='mailq-proc-')
    log_path = os.path.join(log_dir, 'output.log')
    log = open(log_path, 'w')
    full_env = dict(os.environ, PYTHONUNBUFFERED='1')
    full_env.update(env or {})
    p = subprocess.Popen(
        [str(a) for a in args], cwd=str(cwd), env=full_env, text=True,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    p.log_path = log_path
    return p


def read_log(p):
    with open(p.log_path) as fh:
        return fh.read()


def stop_process(p, sig=signal.SIGTERM, timeout=30):
    """Signal the process group, escalate to SIGKILL; return the exit code."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
    return p.returncode


def wait_http(url, timeout=15):
    """Poll until the server answers with any HTTP status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError('%s did not answer within %ss: %s'
                                     % (url, timeout, exc))
            time.sleep(0.1)
