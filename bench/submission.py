"""SMTP submission: Postfix's smtp-source submits 2 KB messages over 8 sessions to
`mailq submission`, side by side with POST /api/mails in the same run. Afterwards
every accepted message must be a queued record. Then the time of one submission
(MAIL, RCPT, DATA, the message, the 250) on one reused session at 100 messages/s."""
import shutil
import smtplib
import socket
import subprocess
import time

from .env import tree_cpu, wait_until
from .latency import paced, summary

SMTP_SOURCE = shutil.which('smtp-source') or '/usr/sbin/smtp-source'


def submit(env, rt, count, sessions=8, size=2048):
    """Rate of `count` messages through the listener, and the record check."""
    env.flush()
    listener = env.mailq('submission')
    try:
        wait_until(lambda: listening(env.submission_port), 30)
        _source(env, 200, sessions, size)                     # warm up
        env.flush()
        cpu_before = tree_cpu(listener.pid)
        started = time.perf_counter()
        _source(env, count, sessions, size)
        seconds = time.perf_counter() - started
        cpu = tree_cpu(listener.pid) - cpu_before
    finally:
        env.stop(listener)
    queued = sum(rt.store.queue(q).size() for q in rt.store.known_queues())
    problems = [] if queued == count else [f'{queued} queued records for {count} submitted']
    return {'count': count, 'seconds': round(seconds, 3), 'rate': round(count / seconds, 1),
            'cpu_us_per_message': round(cpu / count * 1e6), 'problems': problems}


def latency(env, rate=100, seconds=10, size=2048):
    """p50/p99/max of one submission on a reused smtplib session at `rate` a second."""
    env.flush()
    listener = env.mailq('submission')
    message = _message(size)
    try:
        wait_until(lambda: listening(env.submission_port), 30)
        with smtplib.SMTP('127.0.0.1', env.submission_port, timeout=30) as conn:
            for _ in range(50):                                 # warm up
                conn.sendmail('bench@example.com', ['to@example.com'], message)
            times = []
            for _ in paced(rate, seconds):
                sent = time.perf_counter()
                conn.sendmail('bench@example.com', ['to@example.com'], message)
                times.append(time.perf_counter() - sent)
    finally:
        env.stop(listener)
    return summary(times)


def _message(size):
    head = b'From: bench@example.com\r\nTo: to@example.com\r\nSubject: latency\r\n\r\n'
    line = b'x' * 76 + b'\r\n'
    return head + line * max(1, (size - len(head)) // len(line))


def _source(env, count, sessions, size):
    subprocess.run([SMTP_SOURCE, '-s', str(sessions), '-m', str(count), '-l', str(size),
                    '-f', 'bench@example.com', '-t', 'to@example.com', '-d',   # -d: reuse
                    f'127.0.0.1:{env.submission_port}'], check=True, capture_output=True,
                   timeout=600)


def listening(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
        return True
    except OSError:
        return False
