"""Indexed search at scale: GET /api/mails?recipient=|message_id=|idempotency_key= timed
over HTTP against `mailq.py web`, with `count` mails stored.

The mails go through the real accept script (Store.accept's own calls, streamed to
`redis-cli --pipe`), so the index entries are the ones accept.lua writes; the records
are small (no body: the search never reads it) so that a million fit the bench's
Redis. One address gets a tenth of all mail (the monitoring inbox that makes a deep
index); the others get a few each.
"""
import dataclasses
import http.client
import json
import statistics
import subprocess
import urllib.parse

from . import mails
from .mails import HOT, address
from .httpload import get

class Recorder:
    """Stands in for a pipeline: keeps each EVALSHA the store sends as Redis protocol,
    for `redis-cli --pipe` (a Python pipeline spends most of the fill packing replies)."""

    def __init__(self):
        self.parts = []
        self.encoded = {}       # the first few thousand values: the fields every mail shares

    def evalsha(self, *args):
        self.command('EVALSHA', *args)

    def command(self, *args):
        """Any command, as the bench writes besides the store's scripts."""
        parts, encoded = self.parts, self.encoded
        parts.append(b'*%d\r\n' % len(args))
        for arg in args:
            kind = type(arg)
            piece = encoded.get(arg) if kind is str else None
            if piece is None:
                data = arg if kind is bytes else (
                    repr(arg) if kind is float else str(arg)).encode()
                piece = b'$%d\r\n%s\r\n' % (len(data), data)
                if kind is str and len(encoded) < 4096:
                    encoded[arg] = piece
            parts.append(piece)

    def take(self):
        data, self.parts = b''.join(self.parts), []
        return data


def fill(rt, count, chunk=50000):
    """`count` mails through rt.store.accept, streamed to `redis-cli --pipe`. Returns
    (a message_id, an idempotency key) of a mail in the middle, to look up."""
    template = dataclasses.replace(mails.sample_mail(rt), raw=b'')
    rt.redis.script_load(rt.store.scripts.accept.script)
    cli = pipe_cli(rt)
    recorder = Recorder()
    for start in range(0, count, chunk):
        for n in range(start, min(start + chunk, count)):
            mail = mails.numbered(template, n)
            rt.store.accept(mail, rt.new_task(mail.id, mail.queue), pipe=recorder)
        cli.stdin.write(recorder.take())
    wait_cli(cli)
    probe = count // 2
    return f'<{probe}.bench@example.com>', f'order-{probe - probe % 2}'


def pipe_cli(rt):
    """`redis-cli --pipe` to the runtime's Redis: write Recorder.take() to its stdin."""
    kwargs = rt.redis.connection_pool.connection_kwargs
    return subprocess.Popen(['redis-cli', '-h', kwargs['host'], '-p', str(kwargs['port']),
                             '--pipe'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def wait_cli(cli):
    """Until Redis ran all that was written; fails on any error reply."""
    if not cli.stdin.closed:
        cli.stdin.close()
    out = cli.stdout.read()
    cli.wait()
    assert cli.returncode == 0 and b'errors: 0,' in out, out[-2000:]


def lookups(message_id, idempotency_key):
    return {'recipient, 1 in 10 mails (page 1)': {'recipient': HOT},
            'recipient, a few mails': {'recipient': address(1)},
            'message_id': {'message_id': message_id},
            'idempotency_key': {'idempotency_key': idempotency_key}}


def time_lookups(env, message_id, idempotency_key, repeat=20):
    """{label: {median_ms, max_ms, found}}; the hot address's page 2 too, by its cursor."""
    measured = {}
    paths = {label: '/api/mails?' + urllib.parse.urlencode(params)
             for label, params in lookups(message_id, idempotency_key).items()}
    body = _get_json(env, paths['recipient, 1 in 10 mails (page 1)'])
    paths['recipient, 1 in 10 mails (page 2, cursor)'] = (
        '/api/mails?' + urllib.parse.urlencode({'recipient': HOT, 'cursor': body['next']}))
    for label, path in paths.items():
        found = len(_get_json(env, path)['mails'])
        times = [get(env.web_port, path)[0] for _ in range(repeat)]
        measured[label] = {'median_ms': round(statistics.median(times) * 1000, 2),
                           'max_ms': round(max(times) * 1000, 2), 'found': found}
    return measured


def _get_json(env, path):
    conn = http.client.HTTPConnection('127.0.0.1', env.web_port, timeout=30)
    try:
        conn.request('GET', path)
        reply = conn.getresponse()
        assert reply.status == 200, (path, reply.status)
        return json.loads(reply.read())
    finally:
        conn.close()
