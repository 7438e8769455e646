"""A mail record as the API, the dashboard and the CLI show it: one conversion.

A record is the hash `<prefix>:m:<id>` (fields written by compose.Mail.record_fields
and the scripts) plus its attempts (a string of JSON lines, or the list of a record
written before it) and its body key (the message, body.py). Values
are UTF-8; they are decoded with 'replace' everywhere, so one odd byte never turns a
page into an error.
"""
import email.errors
import email.header
import json
import math
import time
from dataclasses import dataclass

from .body import unpack
from .states import HELD, RETRYING

# The fields a list row needs (one HMGET per row).
ROW_FIELDS = ('id', 'status', 'queue', 'task', 'to', 'subject', 'last_error', 'attempts',
              'created_at', 'send_at', 'next_at', 'finished_at', 'sent_at', 'attachments',
              'from', 'staging', 'released_from', 'held_by')


_second = (None, '')     # (a whole second, its date and time of day): one tuple for threads


def iso(ts):
    """ISO 8601 UTC with milliseconds of a Unix time (None for none): the text of
    datetime's isoformat(timespec='milliseconds') with a Z, rounded as fromtimestamp
    rounds, with the date and time of day formatted once a second, not once a call (a
    list page or a webhook dispatcher writes many times of one second)."""
    global _second
    if ts in (None, '', b''):
        return None
    fraction, whole = math.modf(float(ts))
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    second, text = _second
    if second != whole:
        text = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))
        _second = (whole, text)
    return f'{text}.{micros // 1000:03d}Z'


def shown(text):
    """A `to` as the user wrote it. Records of releases before 0.2 kept it encoded
    (=?utf-8?b?...?=); those are decoded for display."""
    if not text or '=?' not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return text


def decode(value):
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else value


def decode_fields(names, values):
    """{name: str} of an HMGET reply, without the fields the record lacks."""
    return {name: decode(value) for name, value in zip(names, values) if value is not None}


def body_gone(worker_config):
    """What the API and the mail page say of a sent mail whose body has expired."""
    return f'body no longer kept (keep_sent_bodies = {worker_config.keep_sent_bodies:g} h)'


@dataclass(frozen=True)
class MailRecord:
    fields: dict          # str -> str, without 'raw'
    attempts: list        # attempt log entries, oldest first
    raw: bytes            # the message as sent ('' unless asked for)
    body_kept: bool = True

    @classmethod
    def from_redis(cls, record, log, body, with_raw=False):
        """From HGETALL, the attempt entries (JSON, Store.get reads both forms) and the
        body key's value (GET with_raw, else EXISTS); None when the record does not
        exist. A record written before the body had its own key holds it as `raw`."""
        if not record:
            return None
        inline = record.pop(b'raw', None)
        fields = {decode(k): decode(v) for k, v in record.items()}
        kept = bool(body) or inline is not None
        raw = (unpack(body) if body else inline or b'') if with_raw else b''
        # oldest first, also when a list of an older release was added to after the
        # attempts string began (a rolling upgrade)
        attempts = sorted((json.loads(entry) for entry in log), key=lambda a: a.get('at') or 0)
        return cls(fields, attempts, raw, kept)

    @property
    def status(self):
        return self.fields.get('status')

    @property
    def envelope(self):
        return {'from': self.fields.get('from'),
                'rcpts': json.loads(self.fields.get('rcpts') or '[]')}

    def view(self):
        """GET /api/mails/<id>: the record with times as ISO 8601 and its history."""
        f = self.fields
        view = {
            'id': f.get('id'), 'status': f.get('status'), 'queue': f.get('queue'),
            'attempts': int(f.get('attempts') or 0), 'created_at': iso(f.get('created_at')),
            'send_at': iso(f.get('send_at')), 'sent_at': iso(f.get('sent_at')),
            'next_attempt_at': iso(f.get('next_at')) if f.get('status') == RETRYING else None,
            'message_id': f.get('message_id'), 'last_error': f.get('last_error') or None,
            'from': f.get('from'), 'to': shown(f.get('to')), 'subject': f.get('subject'),
            'template': f.get('template') or None,
            'history': [attempt_view(a) for a in self.attempts],
        }
        if not self.body_kept:
            view['body_kept'] = False
        # Fields of this release, shown when the record has them (a record written by
        # an older release reads exactly as it did there).
        for name in ('metadata', 'suppressed', 'staging'):
            if f.get(name):
                view[name] = _json(f[name])
        if f.get('released_from'):
            view['released_from'] = f['released_from']
        if f.get('status') == HELD:        # which limiter holds it, and until when
            view['held_by'] = f.get('held_by')
            view['ready_at'] = iso(f.get('next_at'))
        releases = [_json(v) for k, v in f.items() if k.startswith('released:')]
        if releases:
            view['releases'] = sorted((r for r in releases if r), key=lambda r: r['at'])
            for r in view['releases']:
                r['at'] = iso(r['at'])
        for name in ('source', 'client', 'user'):       # where it came in, if not the API
            if f.get(name):
                view[name] = f[name]
        return view


def _json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def attempt_view(attempt):
    return {'at': iso(attempt.get('at')), 'worker': attempt.get('worker'),
            'outcome': attempt.get('outcome'), 'code': attempt.get('code') or None,
            'reply': attempt.get('reply'), 'duration': attempt.get('duration'),
            'refused': attempt.get('refused', {})}


def row(mail_id, fields, score, stale):
    """A list row (dashboard lists and /api/<list>) of the ROW_FIELDS of a record."""
    f = fields
    return {
        'id': mail_id, 'status': f.get('status', 'gone'), 'queue': f.get('queue'),
        'from': f.get('from'), 'to': shown(f.get('to')), 'subject': f.get('subject'),
        'last_error': f.get('last_error') or None, 'attempts': int(f.get('attempts') or 0),
        'attachments': int(f.get('attachments') or 0), 'at': iso(score),
        'at_ts': score, 'created_at': iso(f.get('created_at')),
        'finished_at': iso(f.get('finished_at')), 'stale': stale,
        'staging': _json(f['staging']) if f.get('staging') else None,
        'released_from': f.get('released_from') or None,
        'held_by': f.get('held_by') if f.get('status') == HELD else None,
    }
