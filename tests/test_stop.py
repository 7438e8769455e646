"""How roles stop, as real processes: what they log (issue 11 item 19), the private Redis of
`run --ensure-redis` (item 18), and the persistence warning said once under `run` (item 20)."""
import os
import signal
import subprocess
import time

import pytest
import redis

from support.ini import smtp_section, write_ini
from support.mailq_app import run_cli
from support.procs import PYTHON, REPO_ROOT, free_port, read_log, start_process, stop_process
from support.procs import wait_http
from support.submission import SubmissionProcess


def wait_until(check, timeout=20, what='condition', proc=None):
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f'process exited ({proc.returncode}): {read_log(proc)}')
        if time.monotonic() > deadline:
            raise AssertionError(f'{what} not met in {timeout}s'
                                 + (f': {read_log(proc)}' if proc is not None else ''))
        time.sleep(0.05)


def sending(redis_client, ids):
    return all(redis_client.hget(f'mailq:m:{i}', 'status') == b'sending' for i in ids)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_worker_logs_the_signal_the_mails_handed_back_and_its_exit(tmp_ini, redis_url,
                                                                   redis_client, smtp_server,
                                                                   sig):
    smtp_server.delay_data(30)          # both mails stay in flight past shutdown_timeout
    ini = tmp_ini(redis={'url': redis_url}, smtp=smtp_section(smtp_server),
                  worker={'shutdown_timeout': '0.5', 'concurrency': '2'})
    ids = [run_cli(ini, 'send', '--to', f'u{n}@example.com', '--subject', 's', '--text', 't')
           .stdout.strip() for n in range(2)]
    worker = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'worker', '-c', ini])
    try:
        wait_until(lambda: sending(redis_client, ids), what='both mails sending', proc=worker)
    finally:
        code = stop_process(worker, sig)
    log = read_log(worker)
    assert code == 0, log
    assert f'received {signal.Signals(sig).name}: taking no new mails' in log
    assert 'returned 2 unfinished mail(s) to their queues' in log
    assert log.rstrip().splitlines()[-1].endswith(' stopped'), log
    assert all(redis_client.hget(f'mailq:m:{i}', 'status') == b'queued' for i in ids)


def test_an_idle_worker_says_it_handed_back_none(mailq_ini):
    worker = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'worker', '-c', mailq_ini,
                            '-w', '1'])
    wait_until(lambda: 'transport smtp' in read_log(worker), proc=worker, what='started')
    assert stop_process(worker) == 0
    log = read_log(worker)
    lines = [line for line in log.splitlines()
             if 'received SIGTERM' in line or 'returned 0 unfinished' in line
             or line.endswith(' stopped')]
    assert len(lines) == 3, log


def test_a_signal_during_start_up_is_handed_to_the_consumer(redis_ini):
    """`run` serves the web before the worker's consumer exists; a SIGTERM then must
    still stop it gracefully, not kill it (and its private Redis) at once."""
    from mailq import config as config_module
    from mailq.runtime import Runtime
    from mailq.worker import EarlySignals, MailConsumer
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        EarlySignals.catch()
        os.kill(os.getpid(), signal.SIGTERM)
        assert EarlySignals.received == [signal.SIGTERM]
        consumer = MailConsumer(Runtime(config_module.load(redis_ini)).huey, 0.25, workers=1)
        assert consumer._signum == signal.SIGTERM and consumer._graceful
        assert EarlySignals.received == []
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_web_logs_the_signal_and_its_exit(mailq_ini):
    port = free_port()
    web = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'web', '-c', mailq_ini,
                         '--port', port])
    wait_http(f'http://127.0.0.1:{port}/healthz')
    assert stop_process(web) == 0
    log = read_log(web)
    assert 'received SIGTERM: stopping' in log and 'web stopped' in log, log


@pytest.mark.parametrize('flags', ['POLLIN', 'POLLOUT'])
def test_a_stop_raised_while_waitress_reads_or_writes_a_channel_stops_its_loop(flags):
    """The SIGTERM handler of `mailq web` raises to unwind waitress's loop. Landing while
    the loop is idle in poll, it does; landing while the loop reads or writes a channel
    (a busy web), waitress's own handler there used to swallow it ("uncaptured python
    exception, closing channel"), and the web served on until killed: seen as a web that
    needed SIGKILL in tests/test_stop.py under load. Run through waitress's real
    dispatch function."""
    import select

    from waitress import wasyncore

    from mailq.cli import _Stopped
    swallowed = []

    class Channel:
        def handle_read_event(self):
            raise _Stopped('SIGTERM')
        handle_write_event = handle_read_event

        def handle_error(self):
            swallowed.append(True)
    with pytest.raises(_Stopped):
        wasyncore.readwrite(Channel(), getattr(select, flags))
    assert swallowed == []


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_submission_logs_the_signal_and_its_exit(tmp_ini, redis_url, sig):
    """The listener stores the mails in hand at stop (no mail is handed back: a client
    without its 250 sends again), so its lines are the signal and the exit."""
    port = free_port()
    ini = tmp_ini(redis={'url': redis_url}, submission={'enabled': 'yes', 'port': port})
    listener = SubmissionProcess(ini, port)
    assert stop_process(listener.proc, sig) == 0
    lines = listener.log().rstrip().splitlines()
    assert any(f'received {signal.Signals(sig).name}: taking no new mail' in line
               for line in lines), lines
    assert lines[-1].endswith('submission stopped'), lines


def test_run_warns_about_redis_persistence_once(mailq_ini):
    port = free_port()
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'run', '-c', mailq_ini,
                          '--port', port, '-w', '1'])
    try:
        wait_http(f'http://127.0.0.1:{port}/healthz')
        wait_until(lambda: 'transport smtp' in read_log(proc), proc=proc, what='worker up')
    finally:
        assert stop_process(proc, signal.SIGINT) == 0
    log = read_log(proc)
    assert log.count('Redis keeps nothing on disk') == 1, log
    # the three stop lines of the worker role, in order
    stop = [n for n, line in enumerate(log.splitlines())
            if 'received SIGINT' in line or 'unfinished mail(s)' in line
            or line.endswith(' stopped')]
    assert len(stop) == 3, log


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])     # SIGINT: Ctrl-C
def test_ensure_redis_stops_its_private_redis_when_run_exits(tmp_path, smtp_server, sig):
    """stop_process signals the process group, as a terminal's Ctrl-C under `make run`."""
    redis_port, web_port = free_port(), free_port()
    ini = write_ini(tmp_path / 'mailq.ini', {
        'redis': {'url': f'redis://127.0.0.1:{redis_port}/0'},
        'smtp': smtp_section(smtp_server)})
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'run', '-c', ini, '--ensure-redis',
                          '--port', web_port, '-w', '1'], cwd=tmp_path)
    private = redis.Redis(port=redis_port, socket_timeout=2)
    try:
        wait_http(f'http://127.0.0.1:{web_port}/healthz', timeout=30)
        assert private.ping()
        server_pid = private.info('server')['process_id']
        assert stop_process(proc, sig) == 0, read_log(proc)
        log = read_log(proc)
        assert 'starting a private one' in log
        assert 'returned 0 unfinished mail(s)' in log     # the hand-back ran, then Redis stopped
        assert f'stopped the private redis-server on port {redis_port}' in log
        with pytest.raises(redis.ConnectionError):
            private.ping()
        assert not _alive(server_pid)
        assert (tmp_path / 'var' / 'appendonlydir').is_dir()    # its data stays in ./var
    finally:
        stop_process(proc)
        try:                # never leave a stray server behind, even when the test fails
            private.shutdown(nosave=True)
        except redis.RedisError:
            pass


def test_a_redis_that_was_already_there_is_left_running(tmp_path, redis_url, redis_client,
                                                        smtp_server):
    web_port = free_port()
    ini = write_ini(tmp_path / 'mailq.ini', {'redis': {'url': redis_url},
                                              'smtp': smtp_section(smtp_server)})
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'run', '-c', ini, '--ensure-redis',
                          '--port', web_port, '-w', '1'], cwd=tmp_path)
    wait_http(f'http://127.0.0.1:{web_port}/healthz', timeout=30)
    assert stop_process(proc) == 0
    assert 'private' not in read_log(proc)
    assert redis_client.ping()


def _alive(pid):
    return subprocess.run(['kill', '-0', str(pid)], capture_output=True).returncode == 0
