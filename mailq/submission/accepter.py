"""One thread that stores the mails of every session, those waiting together in one
pipelined round trip (Store.accept_each). With a thread per accept, the event loop and
eight threads took turns at the GIL on every reply it wrote (docs/benchmark.md has the
profile); the loop never waits on Redis either way."""
import queue
import threading

from .. import service

MAX_BATCH = 64          # mails in one round trip; more wait for the next


class Accepter:
    def __init__(self, rt, loop):
        self.rt, self.loop = rt, loop
        self.gathered = []              # this loop turn's (item, future)s, handed over once
        self.pending = queue.SimpleQueue()      # lists of (item, future), or None to end
        self.thread = threading.Thread(target=self._run, name='mailq-accept', daemon=True)
        self.thread.start()

    def accept(self, item):
        """A future of send_message's dict for an item of service.prepare_message."""
        future = self.loop.create_future()
        if not self.gathered:
            self.loop.call_soon(self._hand_over)
        self.gathered.append((item, future))
        return future

    def _hand_over(self):
        """One wake-up of the thread per loop turn, however many sessions finished DATA."""
        batch, self.gathered = self.gathered, []
        self.pending.put(batch)

    def close(self):
        """Store what is waiting, then end the thread."""
        self.pending.put(None)
        self.thread.join()

    def _run(self):
        while True:
            waiting, last = self._next_batch()
            if waiting:
                outcomes = self._store([item for item, _ in waiting])
                try:
                    self.loop.call_soon_threadsafe(_settle, waiting, outcomes)
                except RuntimeError:    # the loop has closed: no client waits any more
                    return
            if last:
                return

    def _next_batch(self):
        """(the entries handed over so far, up to about MAX_BATCH; whether close() came)."""
        batch = self.pending.get()
        while batch is not None and len(batch) < MAX_BATCH:
            try:
                more = self.pending.get_nowait()
            except queue.Empty:
                return batch, False
            if more is None:
                return batch, True
            batch += more
        return batch or [], batch is None

    def _store(self, items):
        """The dict or the exception of each item."""
        try:
            results = self.rt.store.accept_each(items)
        except Exception as exc:        # noqa: BLE001 - a lost Redis: every item's 451
            results = [exc] * len(items)
        return [_outcome(self.rt, item, result) for item, result in zip(items, results)]


def _outcome(rt, item, result):
    try:
        return service.message_accepted(rt, item, result)
    except Exception as exc:            # noqa: BLE001 - the handler picks the reply
        return exc


def _settle(waiting, outcomes):
    for (_, future), outcome in zip(waiting, outcomes):
        if future.cancelled():
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
