"""Indexed search: which mails went to an address, carry a Message-ID or an idempotency key.

Each index is a sorted set `<p>:ix:<kind>:<value>` of mail ids by created_at, written
by accept.lua with the record, so a mail is findable the moment it is stored. Trim
and the dashboard's Delete remove a mail's entries with its record. A record that
expires (sent, cancelled, suppressed) leaves entries behind: a lookup skips and drops
them at once, and the worker's tick (`sweep`) removes the rest a few keys at a time,
so an address nobody looks up does not keep its dead entries forever.
"""
import json
import math

from . import record as records

PAGE = 25
KINDS = {'recipient': 'rcpt', 'message_id': 'msgid', 'idempotency_key': 'idem'}
# What one sweep step reads: keys of the keyspace (SCAN COUNT), oldest entries a key.
SWEEP_SCAN = 200
SWEEP_OLDEST = 50
# Rounds a lookup reads past entries whose record is gone before it answers.
MAX_ROUNDS = 8


def normal_message_id(value):
    """A Message-ID as the index keeps it: without spaces and the angle brackets."""
    return value.strip().strip('<>').strip()


def index_values(rcpts, message_id, idempotency_key):
    """[(kind, value)] of a mail's index entries; addresses are lower case, as the
    suppression list keeps them (the domain is already punycode)."""
    values = [('rcpt', addr.lower()) for addr in dict.fromkeys(rcpts)]
    if message_id:
        values.append(('msgid', normal_message_id(message_id)))
    if idempotency_key:
        values.append(('idem', idempotency_key))
    return values


def record_index_values(fields):
    """index_values of a record read with INDEX_FIELDS (bytes, possibly missing)."""
    rcpts, suppressed, message_id, idem = (records.decode(v) for v in fields)
    addresses = json.loads(rcpts) if rcpts else []
    addresses += json.loads(suppressed) if suppressed else []
    return index_values(addresses, message_id, idem)


INDEX_FIELDS = ('rcpts', 'suppressed', 'message_id', 'idempotency_key')


def index_keys(keys, kind_values):
    return [keys.index(kind, value) for kind, value in kind_values]


def indexes_of_records(client, keys, ids):
    """[[index keys]] of each mail of `ids` as its record says now (one pipeline). A
    recipient that finish.lua took off `rcpts` (delivered before a retry) is not there:
    its entry goes with the sweep."""
    pipe = client.pipeline(transaction=False)
    for mail_id in ids:
        pipe.hmget(keys.record(mail_id), *INDEX_FIELDS)
    return [index_keys(keys, record_index_values(f)) for f in pipe.execute()]


class Cursor:
    """Where the next page starts: just below (score, id) of the last row shown."""

    @staticmethod
    def encode(score, mail_id):
        return f'{score!r}:{mail_id}'

    @staticmethod
    def decode(text):
        score, _, mail_id = (text or '').partition(':')
        try:
            score = float(score)
        except ValueError:
            return None
        return (score, mail_id) if math.isfinite(score) else None


class Index:
    def __init__(self, client, keys):
        self.redis, self.keys = client, keys
        self._sweep_cursor = 0

    def since(self):
        """When the indexes began (a Unix time), or None before the first start-up."""
        value = self.redis.get(self.keys.index_since)
        return float(value) if value else None

    def mark_start(self, now):
        """Note, once, when this layout first ran: mails older are not indexed."""
        self.redis.set(self.keys.index_since, repr(now), nx=True)

    def lookup(self, kind, value, cursor=None, want=PAGE):
        """([row], next cursor or None): mails of one index entry, newest first."""
        key = self.keys.index(kind, value)
        top = Cursor.decode(cursor) if cursor else None
        rows = []
        for _ in range(MAX_ROUNDS):
            entries = self._below(key, top, want + 1 - len(rows))
            if not entries:
                return rows, None
            rows += self._live_rows(key, entries)
            top = (entries[-1][1], entries[-1][0].decode())
            if len(rows) > want:
                last = rows[want - 1]
                return rows[:want], Cursor.encode(last['at_ts'], last['id'])
        return rows, (Cursor.encode(*top) if rows or top else None)

    def _below(self, key, top, count):
        """Up to `count` (member, score) entries strictly below `top`, newest first."""
        if top is None:
            return self.redis.zrevrangebyscore(key, '+inf', '-inf', start=0, num=count,
                                               withscores=True)
        score, mail_id = top
        # Equal scores come in reverse order of member: those >= mail_id were shown.
        ties = self.redis.zrevrangebyscore(key, score, score, withscores=True)
        below = [(m, s) for m, s in ties if m.decode() < mail_id]
        rest = self.redis.zrevrangebyscore(key, f'({score!r}', '-inf', start=0, num=count,
                                           withscores=True)
        return (below + rest)[:count]

    def _live_rows(self, key, entries):
        """Rows of the entries whose record still exists; the others leave the index."""
        pipe = self.redis.pipeline(transaction=False)
        for member, _ in entries:
            pipe.hmget(self.keys.record(member.decode()), *records.ROW_FIELDS)
        rows, gone = [], []
        for (member, score), values in zip(entries, pipe.execute()):
            fields = records.decode_fields(records.ROW_FIELDS, values)
            if fields:
                rows.append(records.row(member.decode(), fields, score, False))
            else:
                gone.append(member)
        if gone:
            self.redis.zrem(key, *gone)
        return rows

    def sweep(self):
        """One step through the keyspace: the oldest entries of a few index keys whose
        record expired leave them. Returns how many went."""
        self._sweep_cursor, found = self.redis.scan(self._sweep_cursor,
                                                    match=self.keys.index_pattern,
                                                    count=SWEEP_SCAN)
        if not found:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for key in found:
            pipe.zrange(key, 0, SWEEP_OLDEST - 1)
        oldest = pipe.execute()
        for members in oldest:
            for member in members:
                pipe.exists(self.keys.record(member.decode()))
        alive = iter(pipe.execute())
        gone = 0
        for key, members in zip(found, oldest):
            dead = [m for m in members if not next(alive)]
            if dead:
                pipe.zrem(key, *dead)
                gone += len(dead)
        pipe.execute()
        return gone
