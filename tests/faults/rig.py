"""The fault rig: a private Redis (AOF, fsync always), a real SMTP server and the
real `mailq.py worker` / `web` processes, plus the counting the fault tests share.

A mail counts as delivered when the SMTP server received its Message-ID.
"""
import collections
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request


from support.ini import write_ini
from support.procs import REPO_ROOT, free_port, read_log, start_process, stop_process, wait_http

FULL = os.environ.get('MAILQ_FAULTS_FULL') == '1'
MAILQ = [sys.executable, str(REPO_ROOT / 'mailq.py')]
PREFIX = 'mailq:'


def wait_until(predicate, timeout, what, interval=0.05, detail=None):
    """Poll `predicate` until it is truthy; fail naming `what` (and `detail()`) after
    `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            more = f': {detail()}' if detail else ''
            raise AssertionError(f'timed out after {timeout}s waiting for {what}{more}')
        time.sleep(interval)


class Rig:
    """One Redis + one SMTP server + the mailq processes started on them."""

    def __init__(self, tmp_path, redis_server, smtp, /, **sections):
        self.tmp = tmp_path
        self.redis_server = redis_server
        self.smtp = smtp
        self.procs = []
        self.web_url = None
        base = {
            'redis': {'url': redis_server.url},
            'worker': {'concurrency': '25', 'queues': 'mailers, default',
                       'retry_base': '0.2', 'retry_factor': '1', 'retry_max_delay': '0.5',
                       'retry_jitter': '0', 'max_retries': '50', 'heartbeat_interval': '0.5',
                       'heartbeat_timeout': '2', 'scheduler_interval': '0.1',
                       'shutdown_timeout': '5'},
            'smtp': {'transport': 'smtp', 'host': '127.0.0.1', 'port': str(smtp.port),
                     'security': 'none', 'timeout': '5', 'from': 'mailq@example.com'},
            'templates': {'path': str(REPO_ROOT / 'templates' / 'mail')},
        }
        for name, values in sections.items():
            base.setdefault(name, {}).update(values)
        self.ini = write_ini(tmp_path / 'mailq.ini', base)
        self.client = redis_server.client(socket_timeout=5)

    # -- processes

    def worker(self, *flags):
        p = start_process(MAILQ + ['worker', '-c', self.ini, *flags])
        self.procs.append(p)
        return p

    def web(self, *flags, port=None):
        port = port or free_port()
        p = start_process(MAILQ + ['web', '-c', self.ini, '--port', str(port), *flags])
        self.procs.append(p)
        self.web_url = f'http://127.0.0.1:{port}'
        wait_http(self.web_url + '/healthz')
        return p

    def worker_id(self, proc, timeout=15):
        """The id the worker process registered in the `workers` set."""
        def find():
            for wid in self.client.zrange(PREFIX + 'workers', 0, -1):
                if wid.decode().split(':')[-2] == str(proc.pid):
                    return wid.decode()
        return wait_until(find, timeout, f'worker pid {proc.pid} to beat',
                          detail=lambda: (proc.poll(), read_log(proc)[-2000:]))

    def kill9(self, proc):
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self):
        for p in self.procs:
            stop_process(p, timeout=15)

    # -- mails in

    def enqueue(self, count, batch=200, **fields):
        """Accept `count` mails through the same service the API uses; returns their ids."""
        from mailq import config as config_module, service
        from mailq.runtime import Runtime
        rt = Runtime(config_module.load(str(self.ini)))
        ids = []
        for start in range(0, count, batch):
            items = [dict({'to': f'user{start + i}@example.com', 'subject': f'fault {start + i}',
                           'text': 'hello'}, **fields) for i in range(min(batch, count - start))]
            ids += [m['id'] for m in service.send_batch(rt, items)]
        rt.pool.disconnect()
        return ids

    def post(self, body, path='/api/mails', timeout=10, headers=None):
        """(status, JSON answer) of a POST to the web process."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.web_url + path, data=data, method='POST',
                                     headers={'Content-Type': 'application/json',
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    # -- counting

    def message_ids(self, mail_ids):
        pipe = self.client.pipeline(transaction=False)
        for mail_id in mail_ids:
            pipe.hget(PREFIX + 'm:' + mail_id, 'message_id')
        return {mail_id: (mid.decode() if mid else None)
                for mail_id, mid in zip(mail_ids, pipe.execute())}

    def received(self):
        """Counter of Message-IDs the SMTP server received."""
        with self.smtp._lock:
            return collections.Counter(m.message_id for m in self.smtp.messages)

    def statuses(self, mail_ids):
        pipe = self.client.pipeline(transaction=False)
        for mail_id in mail_ids:
            pipe.hget(PREFIX + 'm:' + mail_id, 'status')
        return collections.Counter((s or b'missing').decode() for s in pipe.execute())

    def stuck(self, mail_ids):
        """Records of mails not sent yet, and where every task list stands (for failures)."""
        records = {m: self.client.hgetall(PREFIX + 'm:' + m) for m in mail_ids}
        open_ = {m: {k.decode(): v.decode()[:120] for k, v in r.items() if k != b'raw'}
                 for m, r in records.items() if r.get(b'status') != b'sent'}
        lists = {k.decode(): self.client.lrange(k, 0, -1) if self.client.type(k) == b'list'
                 else self.client.type(k) for p in ('inflight:*', 'q:*', 'busy:*')
                 for k in self.client.scan_iter(PREFIX + p)}
        return open_, lists

    def history(self, mail_id):
        """The attempts of one mail, oldest first (a list of records written before the
        attempts string)."""
        entries = self.client.lrange(f'{PREFIX}m:{mail_id}:log', 0, -1)
        entries += (self.client.get(f'{PREFIX}m:{mail_id}:attempts') or b'').splitlines()
        return [json.loads(e) for e in entries]

    def field(self, mail_id, name):
        value = self.client.hget(f'{PREFIX}m:{mail_id}', name)
        return value.decode() if value is not None else None

    def busy(self, worker_id):
        return self.client.hlen(PREFIX + 'busy:' + worker_id)

    def all_delivered(self, message_ids):
        got = self.received()
        return all(got[mid] for mid in message_ids)

    def all_sent(self, message_ids):
        """Delivered at the SMTP server and recorded as sent: the worker writes its
        outcome just after the server's 250, so a test that reads records waits for both."""
        return (self.all_delivered(message_ids.values())
                and self.statuses(list(message_ids)) == {'sent': len(message_ids)})

    def tally(self, mail_ids, message_ids=None):
        """{mails_in, delivered, duplicates, lost} for these mails."""
        message_ids = message_ids or self.message_ids(mail_ids)
        got = self.received()
        delivered = sum(1 for mid in message_ids.values() if got[mid])
        duplicates = sum(got[mid] - 1 for mid in message_ids.values() if got[mid] > 1)
        return {'mails_in': len(mail_ids), 'delivered': delivered, 'duplicates': duplicates,
                'lost': len(mail_ids) - delivered}

    def leftover_keys(self):
        """Keys a finished, idle system must not keep: in-flight lists, busy hashes."""
        return sorted(k.decode() for pattern in ('inflight:*', 'busy:*')
                      for k in self.client.scan_iter(PREFIX + pattern))

    def log(self, proc):
        return read_log(proc)


def port_is_free(port):
    with socket.socket() as s:
        return s.connect_ex(('127.0.0.1', port)) != 0


def record(name, **figures):
    """Append one row of figures to tests/artifacts/reliability.jsonl for docs/reliability.md."""
    path = REPO_ROOT / 'tests' / 'artifacts'
    path.mkdir(parents=True, exist_ok=True)
    with open(path / 'reliability.jsonl', 'a') as fh:
        fh.write(json.dumps({'fault': name, 'full': FULL, 'at': time.time(), **figures}) + '\n')
