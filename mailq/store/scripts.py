"""The Lua scripts, loaded once per client with the shared fragments in front.

Every key a script touches comes in through KEYS, built by keys.py. The
constants the scripts share with Python are defined here, once, and written
into the header of every script.
"""
import os
import threading
from importlib import resources

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    from hiredis import pack_command
except ImportError:     # dist/mailq.pyz carries no compiled extension: redis-py packs
    pack_command = None

# Wake tokens kept per queue: enough for every idle thread to wake, never a growing list.
WAKE_LEN = 100
# Per-day counters (processed, failed per day) outlive the longest history chart.
DAY_STAT_TTL = 200 * 86400
# Fields a first-level search index bucket takes before new values go to the second level
# (store/search.py); well under Redis's hash-max-listpack-entries (512 by default).
INDEX_SPILL = 256

# Called on a pooled connection directly (DirectScript): the API's one Redis call a mail
# (a batch's, many mails a call), and the worker's calls of each delivery (about 25 us of
# client CPU less a call).
DIRECT = ('accept', 'accept_batch', 'fetch', 'claim', 'finish')
# ... of which these run on a connection each thread keeps (KeptConnections): the one call
# `mailq.send()` and POST /api/mails wait for, and the delivery threads' calls.
KEPT = ('accept', 'fetch', 'claim', 'finish')
NAMES = ('accept', 'accept_batch', 'fetch', 'claim', 'finish', 'release', 'due', 'requeue',
         'cancel', 'trim', 'admin_clear', 'admin_delete', 'admin_enqueue', 'admin_filter',
         'admin_kill', 'cron_claim', 'cron_finish', 'cron_reclaim', 'cron_resume', 'cron_skip',
         'hook_done', 'suppress', 'limit_cut', 'limit_slots', 'index_drop')


def source(name):
    """The full text of a script as Redis runs it: constants, lib.lua, the script."""
    folder = resources.files(__package__).joinpath('scripts')
    header = (f'local WAKE_LEN = {WAKE_LEN}\nlocal DAY_STAT_TTL = {DAY_STAT_TTL}\n'
              f'local INDEX_SPILL = {INDEX_SPILL}\n')
    return header + folder.joinpath('lib.lua').read_text() + '\n' + \
        folder.joinpath(f'{name}.lua').read_text()


class Scripts:
    """Every script registered on one client: `scripts.finish(keys=..., args=...)`."""

    def __init__(self, client):
        kept = KeptConnections(client.connection_pool)
        for name in NAMES:
            script = client.register_script(source(name))
            if name in DIRECT:
                script = DirectScript(script, client, kept if name in KEPT else None)
            setattr(self, name, script)


class KeptConnections(threading.local):
    """The pooled connection each thread keeps for its calls of the hot scripts: taking
    one from redis-py's pool and giving it back costs about 12 us a call (a lock, a poll
    for stray bytes, four observability counters), a tenth of a `mailq.send()`.

    It must behave as a checkout would. Kept after an error, redis-py's
    send_packed_command would reconnect it to the address it last had (a dead Sentinel
    master): only connect(), which the pool calls at every checkout, asks the Sentinels.
    So after any failure it goes back to the pool, and so it does when the pool no longer
    owns it (the master moved) and when its thread ends; a forked child takes its own.
    Each use first checks, as a checkout does, that Redis has not closed it meanwhile
    (a restart, CLIENT KILL, its idle `timeout`), and connects it again if so."""

    def __init__(self, pool):
        self.pool = pool
        self.lease = None

    def get(self):
        lease = self.lease
        if lease is None or not lease.usable():
            self.drop()
            lease = self.lease = _Lease(self.pool)
            return lease.conn
        conn = lease.conn
        if _closed_meanwhile(conn):
            conn.disconnect()
            conn.connect()              # through the Sentinels, like a checkout
        return conn

    def run(self, work):
        """work(conn) on this thread's connection, with the connection's retry policy."""
        conn = self.get()
        try:
            return conn.retry.call_with_retry(lambda: work(conn), lambda error: conn.disconnect())
        except BaseException:
            self.drop()
            raise

    def drop(self):
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.give_back()


class _Lease:
    """One connection out of the pool, given back when dropped or forgotten (by the
    process that took it: a forked child's pool has started afresh)."""

    def __init__(self, pool):
        self.pool, self.pid, self.conn = pool, os.getpid(), None   # if the next line raises
        self.conn = pool.get_connection()

    def usable(self):
        return self.pid == os.getpid() and self.pool.owns_connection(self.conn)

    def give_back(self):
        conn, self.conn = self.conn, None
        if conn is not None and self.pid == os.getpid():
            self.pool.release(conn)

    __del__ = give_back


def _closed_meanwhile(conn):
    """Has Redis closed (or written to) this idle connection since its last reply?"""
    try:
        return conn.can_read()
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return True


class DirectScript:
    """A script whose plain calls go straight to a pooled connection, with the
    connection's own retry policy and a reload on NOSCRIPT, as redis-py's client does:
    its command path (argument filtering, observability hooks) costs about 25 us more
    a call. Calls on any other client (a pipeline, the bench's recorder) go through
    redis-py's Script, whose `script` and `sha` this one shows too."""

    def __init__(self, script, client, kept=None):
        self.registered = script
        self.client = client
        self.pool = client.connection_pool
        self.kept = kept

    @property
    def script(self):
        return self.registered.script

    @property
    def sha(self):
        return self.registered.sha

    def __call__(self, keys=(), args=(), client=None):
        if client is not None and client is not self.client:
            return self.registered(keys=keys, args=args, client=client)
        return self._on_connection(lambda conn: self._run(conn, keys, args))

    def run_each(self, calls):
        """The script once per (keys, args), in one write on this thread's connection
        (no MULTI: one refused leaves the others done). Returns each reply or exception
        in order. Calls answered NOSCRIPT did not run: loaded, they run once."""
        def work(conn):
            replies = _send_together(conn, [(self, keys, args) for keys, args in calls])
            missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                self._load(conn)
                again = _send_together(conn, [(self, *calls[n]) for n in missing])
                for n, reply in zip(missing, again):
                    replies[n] = reply
            return replies
        return self._on_connection(work)

    def run_all(self, calls):
        """The script once per (keys, args) in one MULTI/EXEC: all run or none does.
        Returns the replies in order; an error reply raises, as redis-py's pipeline does.
        Packed by hiredis and read straight off a pooled connection: redis-py's pipeline
        costs about a third of a batch's Python (its packer, its Script path, SCRIPT
        EXISTS first). SCRIPT LOAD goes first in the same round trip (for a script Redis
        holds it costs a digest), so no EVALSHA of the transaction meets NOSCRIPT."""
        if pack_command is None:
            with self.client.pipeline(transaction=True) as pipe:
                for keys, args in calls:
                    self.registered(keys=keys, args=args, client=pipe)
                return pipe.execute()
        packed = [pack('SCRIPT', 'LOAD', self.script), pack('MULTI'),
                  *(pack('EVALSHA', self.sha, len(keys), *keys, *args) for keys, args in calls),
                  pack('EXEC')]
        return self._on_connection(lambda conn: _transaction(conn, packed))

    def _on_connection(self, work):
        if self.kept is not None:
            return self.kept.run(work)
        conn = self.pool.get_connection()
        try:
            return conn.retry.call_with_retry(lambda: work(conn), lambda error: conn.disconnect())
        finally:
            self.pool.release(conn)

    def _run(self, conn, keys, args):
        try:
            return self._evalsha(conn, keys, args)
        except NoScriptError:
            self._load(conn)
            return self._evalsha(conn, keys, args)

    def _load(self, conn):
        """Load the script again, on a Redis that lost its cache (restarted or flushed)."""
        conn.send_command('SCRIPT', 'LOAD', self.script)
        self.registered.sha = conn.read_response().decode()

    def _evalsha(self, conn, keys, args):
        if pack_command is None:
            conn.send_command('EVALSHA', self.sha, len(keys), *keys, *args)
        else:
            conn.send_packed_command([pack('EVALSHA', self.sha, len(keys), *keys, *args)])
        return conn.read_response()


def run_together(calls):
    """Each (DirectScript, keys, args) in order, sent in one write on the first one's
    connection (a delivery thread's kept one), every reply read: a thread's outcome and
    its next claim cost one round trip. Returns each reply or exception in order. A call
    answered NOSCRIPT did not run: the scripts are loaded and it runs again together
    with every call after it, which may rely on it (a finish clears the thread's busy
    entry that the claim after it writes; a claim run twice counts its attempt twice)."""
    def work(conn):
        replies = _send_together(conn, calls)
        first = next((n for n, r in enumerate(replies) if isinstance(r, NoScriptError)), None)
        if first is not None:
            for script, _, _ in calls[first:]:
                script._load(conn)
            replies[first:] = _send_together(conn, calls[first:])
        return replies
    return calls[0][0]._on_connection(work)


def _send_together(conn, calls):
    if pack_command is None:
        conn.send_packed_command(conn.pack_commands(
            [('EVALSHA', s.sha, len(keys), *keys, *args) for s, keys, args in calls]))
    else:
        conn.send_packed_command([b''.join(
            pack('EVALSHA', s.sha, len(keys), *keys, *args) for s, keys, args in calls)])
    replies = []
    for _ in calls:
        try:
            replies.append(conn.read_response())
        except ResponseError as exc:    # read on: the next reply is still on the wire
            replies.append(exc)
    return replies


def _transaction(conn, packed):
    """Send SCRIPT LOAD, MULTI, the commands and EXEC; read every reply (an error one
    too, or the connection would be left mid-answer); EXEC's replies, or raise the first
    error: a command refused when queued (then EXEC aborts) or one that failed in it."""
    conn.send_packed_command([b''.join(packed)])     # one send, not one per command
    refused = []
    for _ in range(len(packed) - 1):
        try:
            conn.read_response()
        except ResponseError as exc:
            refused.append(exc)
    try:
        replies = conn.read_response()
    except ResponseError as exc:
        raise (refused[0] if refused else exc) from None
    if refused:
        raise refused[0]
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def pack(*args):
    """The command in Redis's protocol, packed by hiredis directly: redis-py's packer
    walks the arguments in Python first (about 8 us for a finish call's 50)."""
    try:
        return pack_command(args)
    except TypeError as exc:
        raise DataError(exc) from exc
