"""Where mails wait, one class per Redis structure: Queue, Schedule, Retries, Dead, Outbox,
Held.

Each knows its key, how to count and page it, how to filter it inside Redis
(admin_filter.lua) and how to empty it (admin_clear.lua). A queue is a list of
Huey tasks (workers pop from the right, so the oldest is last); the others are
sorted sets, of tasks (schedule, retry, held) or of mail ids (dead, outbox).
"""
import json
import re

from . import record as records
from .search import indexes_of_records
from .states import LISTS, QUEUE_LIST
from .taskformat import parse_short

CHUNK = 1000
# Members one filtered page reads at most (tens of ms); "search older" goes on from there.
FILTER_SCAN = 10 * CHUNK
_TASK_ID = re.compile(rb'"args":\["([^"\\]*)"')


def task_mail_id(task):
    """The mail id a Huey task carries (either form), or None for a malformed task."""
    short = parse_short(task)
    if short:
        return short[1]
    found = _TASK_ID.search(task) if isinstance(task, bytes) else None
    if found:
        return found.group(1).decode()
    try:
        return json.loads(task)['args'][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def task_queue(task):
    short = parse_short(task)
    if short:
        return short[2]
    try:
        return json.loads(task).get('kwargs', {}).get('queue')
    except (ValueError, AttributeError):
        return None


class Container:
    kind = None          # a states.ListKind

    def __init__(self, client, keys, scripts, key):
        self.redis, self.keys, self.scripts, self.key = client, keys, scripts, key

    @property
    def holds_tasks(self):
        return self.kind.holds_tasks

    def mail_id(self, member):
        return task_mail_id(member) if self.holds_tasks else member.decode()

    def record_key(self, member):
        return self.keys.record(self.mail_id(member) or '-')

    def page(self, start, stop):
        """[(member, score or None)] at positions start..stop (inclusive), display order."""
        raise NotImplementedError

    def size(self):
        raise NotImplementedError

    def members(self):
        """Every member now, in display order: what an "all" action acts on, once each."""
        return [member for member, _ in self.page(0, -1)]

    def filter(self, needle, skip, want, start=0, budget=None):
        """(matches, [(member, score)] of matches skip..skip+want, where the next scan
        starts or None at the end): the members from position `start` are matched inside
        Redis chunk by chunk, `budget` of them at most; `needle` is lower case (ASCII)."""
        total, wanted, end = 0, [], start + (budget or FILTER_SCAN)
        while True:
            if start >= end:
                return total, wanted, start
            chunk = self.page(start, min(start + CHUNK, end) - 1)
            if not chunk:
                return total, wanted, None
            found = self.scripts.admin_filter(
                keys=[self.record_key(member) for member, _ in chunk], args=[needle])
            for position in found:
                if skip <= total < skip + want:
                    wanted.append(chunk[position - 1])
                total += 1
            start += len(chunk)

    def rows(self, members):
        """List rows of [(member, score)]: the ROW_FIELDS of each mail, one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        ids = [self.mail_id(member) for member, _ in members]
        for mail_id in ids:
            pipe.hmget(self.keys.record(mail_id or '-'), *records.ROW_FIELDS)
        rows = []
        for (member, score), mail_id, values in zip(members, ids, pipe.execute()):
            fields = records.decode_fields(records.ROW_FIELDS, values)
            task = fields.pop('task', None)
            stale = not fields or (self.holds_tasks and task != records.decode(member))
            rows.append(records.row(mail_id, fields, score, stale))
        return rows

    def clear(self):
        """Empty the container of what it holds now; the mails it held are erased.
        Returns the number of members removed."""
        removed, members = 0, self.members()
        for i in range(0, len(members), CHUNK):
            chunk = members[i:i + CHUNK]
            ids = [self.mail_id(member) or '-' for member in chunk]
            keys, args = [self.key, self.keys.events], [self.kind.state, self.kind.members]
            for member, mail_id, (indexes, fields) in zip(
                    chunk, ids, indexes_of_records(self.redis, self.keys, ids)):
                keys += [self.keys.record(mail_id), self.keys.log(mail_id),
                         self.keys.attempts(mail_id), self.keys.body(mail_id), *indexes]
                args += [member, mail_id, len(fields), *fields]
            removed += self.scripts.admin_clear(keys=keys, args=args)
        return removed


class Queue(Container):
    kind = QUEUE_LIST

    def __init__(self, client, keys, scripts, name):
        super().__init__(client, keys, scripts, keys.queue(name))
        self.name = name

    def size(self):
        return self.redis.llen(self.key)

    def page(self, start, stop):
        return [(member, None) for member in self.redis.lrange(self.key, start, stop)]

    def oldest(self):
        return self.redis.lindex(self.key, -1)


def latencies(client, keys, names, now):
    """{queue: (size, seconds its oldest mail has waited since it became due)}, as
    Sidekiq counts it: since the latest of created, send_at, next_at and queued_at
    (set when a mail is put back by hand, e.g. retried from Dead). Two round trips."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(keys.queue(name))
        pipe.lindex(keys.queue(name), -1)
    replies = pipe.execute()
    sizes, oldest = replies[0::2], replies[1::2]
    pipe = client.pipeline(transaction=False)
    for task in oldest:
        pipe.hmget(keys.record((task and task_mail_id(task)) or '-'),
                   'created_at', 'send_at', 'next_at', 'queued_at')
    found = {}
    for name, size, times in zip(names, sizes, pipe.execute()):
        due = max((float(t) for t in times if t), default=None)
        found[name] = (size, round(max(0.0, now - due), 3) if size and due else 0.0)
    return found


class SortedSet(Container):
    def size(self):
        return self.redis.zcard(self.key)

    def page(self, start, stop):
        read = self.redis.zrevrange if self.kind.newest_first else self.redis.zrange
        return read(self.key, start, stop, withscores=True)


class Schedule(SortedSet):
    kind = LISTS['scheduled']


class Retries(SortedSet):
    kind = LISTS['retrying']


class Held(SortedSet):
    """Mails waiting for a limiter's token (store/limits.py), by ready time."""
    kind = LISTS['held']


class Bounded(SortedSet):
    """A set of mail ids kept by count (and age): Dead and Outbox."""

    def trim(self, max_count, min_score=None):
        """Forget the mails past `max_count` (oldest first) and those older than
        `min_score`, with their records. Returns how many went."""
        ids = []
        if min_score is not None:
            ids = self.redis.zrangebyscore(self.key, '-inf', f'({min_score}', start=0,
                                           num=CHUNK)
        extra = self.redis.zcard(self.key) - max_count - len(ids)
        if extra > 0:
            ids += self.redis.zrange(self.key, len(ids), len(ids) + min(extra, CHUNK) - 1)
        if not ids:
            return 0
        ids = [mail_id.decode() for mail_id in ids]
        keys, args = [self.key], []
        for mail_id, (indexes, fields) in zip(ids, indexes_of_records(self.redis, self.keys,
                                                                      ids)):
            keys += [self.keys.record(mail_id), self.keys.log(mail_id),
                     self.keys.attempts(mail_id), self.keys.body(mail_id), *indexes]
            args += [mail_id, len(fields), *fields]
        return self.scripts.trim(keys=keys, args=args)


class Dead(Bounded):
    kind = LISTS['dead']


class Outbox(Bounded):
    kind = LISTS['outbox']

    def contains(self, mail_id):
        return self.redis.zscore(self.key, mail_id) is not None
