"""Indexed search: which mails went to an address, carry a Message-ID or an idempotency key.

A value's mails are a sorted set `<p>:ix:<kind>:<value>` of mail ids by created_at. Most
values have one mail (a Message-ID always should), and a key each costs about 200 B;
so while a value has one mail, its entry is a field of a bucket hash instead (about
50 B in a listpack): `<p>:ixb:<kind>:<level>:<n>`, field a 64-bit digest of the value,
value '<mail id> <created_at>'. The buckets of the first level (few, so they fill up
even in a small Redis) take values until they hold INDEX_SPILL fields, then new values
go to the second level (enough buckets for millions of values). A second mail of the
value moves both into its zset (index_add in lib.lua). Zsets written before buckets
existed are read and kept up the same way: nothing to migrate.

Everything is written by accept.lua with the record, so a mail is findable the moment
it is stored. Trim and the dashboard's Delete remove a mail's entries with its record.
A record that expires (sent, cancelled, suppressed) leaves entries behind: a lookup
skips and drops them at once, and the worker's tick (`sweep`) removes the rest a few
keys at a time, so a value nobody looks up does not keep its dead entries forever.
"""
import base64
import hashlib
import json
import math

from . import record as records

PAGE = 25
KINDS = {'recipient': 'rcpt', 'message_id': 'msgid', 'idempotency_key': 'idem'}
# Buckets per kind of the first and the second level.
LEVELS = (64, 4096)
# What one sweep step reads: keys of the keyspace (SCAN COUNT), oldest entries a key,
# buckets.
SWEEP_SCAN = 200
SWEEP_OLDEST = 50
SWEEP_BUCKETS = 4
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


def slot(keys, kind, value):
    """(zset key, first-level bucket, second-level bucket, field) of one index value."""
    digest = hashlib.blake2b(f'{kind}:{value}'.encode(), digest_size=16).digest()
    field = base64.urlsafe_b64encode(digest[:8]).rstrip(b'=').decode()
    return (keys.index(kind, value),
            keys.index_bucket(kind, 0, int.from_bytes(digest[8:12], 'big') % LEVELS[0]),
            keys.index_bucket(kind, 1, int.from_bytes(digest[12:], 'big') % LEVELS[1]), field)


def index_keys(keys, kind_values):
    """(KEYS, fields) of a mail's index values for the scripts: three keys and one field
    a value (index_add and unindex in lib.lua)."""
    script_keys, fields = [], []
    for kind, value in kind_values:
        *slot_keys, field = slot(keys, kind, value)
        script_keys += slot_keys
        fields.append(field)
    return script_keys, fields


def indexes_of_records(client, keys, ids):
    """[(KEYS, fields)] of each mail of `ids` as its record says now (one pipeline). A
    recipient that finish.lua took off `rcpts` (delivered before a retry) is not there:
    its entry goes with the sweep."""
    pipe = client.pipeline(transaction=False)
    for mail_id in ids:
        pipe.hmget(keys.record(mail_id), *INDEX_FIELDS)
    return [index_keys(keys, record_index_values(f)) for f in pipe.execute()]


def bucket_entry(held):
    """(mail id, score) of a bucket field's value 'id score'."""
    mail_id, _, score = held.decode().partition(' ')
    return mail_id, float(score)


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
    def __init__(self, client, keys, scripts):
        self.redis, self.keys, self.scripts = client, keys, scripts
        self._sweep_cursor = 0
        self._bucket_cursor = 0

    def since(self):
        """When the indexes began (a Unix time), or None before the first start-up."""
        value = self.redis.get(self.keys.index_since)
        return float(value) if value else None

    def mark_start(self, now):
        """Note, once, when this layout first ran: mails older are not indexed."""
        self.redis.set(self.keys.index_since, repr(now), nx=True)

    def lookup(self, kind, value, cursor=None, want=PAGE):
        """([row], next cursor or None): mails of one index value, newest first."""
        key, *buckets, field = slot(self.keys, kind, value)
        loose = self._bucketed(buckets, field)
        top = Cursor.decode(cursor) if cursor else None
        rows = []
        for _ in range(MAX_ROUNDS):
            entries = self._below(key, top, want + 1 - len(rows), loose)
            if not entries:
                return rows, None
            rows += self._live_rows(key, entries, loose, field)
            top = (entries[-1][1], entries[-1][0].decode())
            if len(rows) > want:
                last = rows[want - 1]
                return rows[:want], Cursor.encode(last['at_ts'], last['id'])
        return rows, (Cursor.encode(*top) if rows or top else None)

    def _bucketed(self, buckets, field):
        """{member: (score, bucket)} of the value's bucket fields (one, or none)."""
        pipe = self.redis.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hget(bucket, field)
        loose = {}
        for bucket, held in zip(buckets, pipe.execute()):
            if held:
                mail_id, score = bucket_entry(held)
                loose[mail_id.encode()] = (score, bucket)
        return loose

    def _below(self, key, top, count, loose):
        """Up to `count` (member, score) entries strictly below `top`, newest first: of
        the zset, and the bucket entries `loose`."""
        extra = [(m, s) for m, (s, _) in loose.items()
                 if top is None or (s, m.decode()) < top]
        if top is None:
            found = self.redis.zrevrangebyscore(key, '+inf', '-inf', start=0, num=count,
                                                withscores=True)
        else:
            score, mail_id = top
            # Equal scores come in reverse order of member: those >= mail_id were shown.
            ties = self.redis.zrevrangebyscore(key, score, score, withscores=True)
            below = [(m, s) for m, s in ties if m.decode() < mail_id]
            found = below + self.redis.zrevrangebyscore(key, f'({score!r}', '-inf', start=0,
                                                        num=count, withscores=True)
        if extra:
            found = sorted(found + extra, key=lambda e: (e[1], e[0]), reverse=True)
        return found[:count]

    def _live_rows(self, key, entries, loose, field):
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
            self._drop([(loose[m][1], field, m) for m in gone if m in loose])
        return rows

    def _drop(self, entries):
        """Bucket entries (bucket, field, mail id) of records found gone leave their
        buckets, each if it still names that mail. Returns how many went."""
        if not entries:
            return 0
        return self.scripts.index_drop(keys=[bucket for bucket, _, _ in entries],
                                       args=[a for _, field, mail_id in entries
                                             for a in (field, mail_id)])

    def sweep(self):
        """One step: the entries of a few index zsets and buckets whose record expired
        leave them. Returns how many went."""
        return self._sweep_zsets() + self._sweep_buckets()

    def _sweep_zsets(self):
        """The oldest entries of the index zsets a SCAN step finds."""
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

    def _sweep_buckets(self):
        """The next SWEEP_BUCKETS buckets, in turn through every kind and level."""
        per_kind, kinds = sum(LEVELS), list(KINDS.values())
        start = self._bucket_cursor % (per_kind * len(kinds))
        chosen = [self._bucket_at(kinds, per_kind, p)
                  for p in range(start, min(start + SWEEP_BUCKETS, per_kind * len(kinds)))]
        self._bucket_cursor = start + len(chosen)
        pipe = self.redis.pipeline(transaction=False)
        for bucket in chosen:
            pipe.hgetall(bucket)
        held = [(bucket, field, bucket_entry(value)[0])
                for bucket, fields in zip(chosen, pipe.execute())
                for field, value in fields.items()]
        for _, _, mail_id in held:
            pipe.exists(self.keys.record(mail_id))
        return self._drop([(b, f.decode(), m) for (b, f, m), alive in zip(held, pipe.execute())
                           if not alive])

    def _bucket_at(self, kinds, per_kind, position):
        kind, n = kinds[position // per_kind], position % per_kind
        level = int(n >= LEVELS[0])
        return self.keys.index_bucket(kind, level, n - level * LEVELS[0])
