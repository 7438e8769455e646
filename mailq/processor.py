"""Deliver one fetched mail: claim it, hand it to the transport, record the outcome.

RFC 5321 4.2.1 decides the outcome: 2yz is sent, 4yz (and connection errors
and timeouts, which carry no code) is retried with backoff, 5yz is dead at
once. Retries that run out are dead too. The claim and the outcome are one Lua
script each; the task is acknowledged only together with its outcome.
"""
import json
import logging
import time

import redis

from .fetch import busy_field
from .redisconn import is_outage, outage_text
from .retry import gives_up, retry_delay
from .store.states import DEAD, HELD, RETRYING, SENT, SUPPRESSED
from .suppression import automatic as automatic_suppressions
from .throttling import is_throttling
from .transport import Delivery

log = logging.getLogger('mailq.worker')


class Processor:
    def __init__(self, store, transport, worker_config, log_config, new_task, worker_id,
                 suppression_config=None, staging=None, release_transport=None):
        self.store = store
        self.staging = staging              # transport.Staging, or None: no staging rules
        self.release_transport = release_transport
        self.suppression = suppression_config
        self.transport = transport
        self.cfg = worker_config
        self.full_recipients = log_config.recipients == 'full'
        self.new_task = new_task          # mail_id, queue -> serialized Huey task
        self.worker_id = worker_id

    def busy_field(self):
        return busy_field()

    def process(self, mail_id, queue, task, claim, then_fetch=(), fetch_min=0,
                then_claim=None):
        """Deliver a task that store.take fetched and claimed; record the outcome, and
        with `then_fetch` (a queue order) fetch the thread's next task in the same call;
        with `then_claim` (a task fetched ahead) claim it in the same round trip.
        Returns (outcome, (queue, task) fetched or None, claimed item or None)."""
        busy = self.busy_field()
        sender, recipients, raw, attempts, suppressed, relay = claim
        if suppressed:      # suppressed since it was accepted: left off the envelope
            recipients = [r for r in recipients if r not in suppressed]
            if not recipients:
                return self._all_suppressed(mail_id, queue, task, busy, suppressed,
                                            (then_fetch, fetch_min, then_claim))
        transport, send_to, message, note = self._route(recipients, raw, relay)
        keep = getattr(transport, 'keeps_mail', False) or bool(note and note.get('caught'))
        started = time.monotonic()
        try:
            if transport is None:
                delivery = Delivery(ok=False, transient=True,
                                    reply='a released mail, but this worker has no relay for '
                                          'releases ([smtp] release_host or transport = smtp)')
            elif not send_to:       # staging caught every recipient: kept, never sent
                delivery = Delivery(ok=True, code=250, reply='kept in the outbox: ' +
                                    note['reason'])
            else:
                delivery = transport.send(sender, send_to, message)
        except Exception as exc:   # a bug must not lose the mail: retry it
            log.exception('transport error for mail %s', mail_id)
            transport.close()       # the session may be mid-transaction
            delivery = Delivery(ok=False, transient=True, reply=f'internal error: {exc!r}'[:500])
        duration = time.monotonic() - started
        owed = delivery.still_owed(send_to)
        if note and note['mode'] == 'redirect' and owed:
            owed = recipients       # a redirected mail is owed to all of them, or none
        held = self._throttled(delivery, send_to) if self.store.throttle.on else None
        if held:        # "slow down": held for its limiter, no attempt counted
            outcome, next_at, new_task = HELD, held, ''
        else:
            outcome, next_at, new_task = self.decide(delivery, owed, attempts, mail_id, queue)
        attempt = {'at': time.time(), 'worker': self.worker_id, 'outcome': outcome,
                   'code': delivery.code, 'reply': delivery.outcome_text,
                   'duration': round(duration, 4)}
        last_error = '' if delivery.ok else delivery.outcome_text
        if delivery.refused:
            attempt['refused'] = delivery.refused
        if delivery.ok and delivery.refused:
            last_error = 'some recipients refused: ' + ', '.join(
                f'{rcpt} ({code})' for rcpt, (code, _) in delivery.refused.items())
        if delivery.ok and owed:      # the attempt is judged by its deferred recipients
            attempt['code'] = delivery.deferred[owed[0]][0]
        # Only the recipients still owed the mail stay on its envelope, so a retry
        # never sends a second copy to those who have it.
        rcpts = json.dumps(owed) if owed and owed != recipients and not held else ''
        # Bad addresses go on the suppression list, in the script that records the outcome.
        suppress = automatic_suppressions(
            {r: v for r, v in delivery.refused.items() if v[0] >= 500}, mail_id,
            self.suppression, attempt['at']) if delivery.refused and self.suppression else None
        refused_for_good = bool(suppressed) or any(
            code >= 500 for code, _ in delivery.refused.values())
        event = self._event(delivery, outcome, recipients, suppressed) \
            if self.store.events.on else None
        fetched, claimed = self._finish(
            then_claim, mail_id, task, self.worker_id, busy, outcome, attempt,
            last_error=last_error, next_at=next_at, new_task=new_task, rcpts=rcpts,
            now=attempt['at'], outbox=keep, event=event,
            staging=json.dumps(note) if note else '', suppress=suppress,
            refused_for_good=refused_for_good, suppressed_now=suppressed,
            then_fetch=then_fetch, fetch_min=fetch_min)
        # Not last_error: it names refused recipients, which the log may not show in full.
        self._log(mail_id, queue, recipients, outcome, attempt['code'],
                  '' if delivery.ok else delivery.outcome_text, duration)
        return outcome, fetched, claimed

    def _finish(self, then_claim, mail_id, *args, **kwargs):
        """store.finish until Redis answers (the mail went out, or failed: its outcome
        must be recorded, however long Redis is away, or it would be sent again; a write
        repeated because its reply was lost is recognised by its time and recorded once).
        Returns ((queue, task) fetched or None, the item claimed with it or None)."""
        reply = _until_redis_answers(
            lambda: self.store.finish(mail_id, *args, then_claim=then_claim, **kwargs),
            f'record the outcome of mail {mail_id}')
        return reply[1], reply[2] if then_claim else None

    def _route(self, recipients, raw, relay):
        """(transport, recipients, message, staging note or None) of this attempt. A
        released mail goes through the release relay as it is; otherwise the staging
        rules decide (not with transport = outbox, which keeps every mail anyway)."""
        if relay == 'release':
            return self.release_transport, recipients, raw, None
        if self.staging is None or not self.staging.mode or \
                getattr(self.transport, 'keeps_mail', False):
            return self.transport, recipients, raw, None
        send_to, message, note = self.staging.plan(recipients, raw)
        return self.transport, send_to, message, note

    def _throttled(self, delivery, recipients):
        """The ready time of a mail the relay asked to slow down (throttling.py), or of
        one refused by a 421 greeting; None for any other reply, or when no configured
        limiter can hold it. Logs each change of a limiter once."""
        if delivery.ok or not delivery.transient:
            return None
        greeting = delivery.stage == 'connect' and delivery.code == 421
        if not greeting and not is_throttling(delivery.code, delivery.reply):
            return None
        found = _until_redis_answers(lambda: self.store.throttle.throttled(
            recipients, delivery.outcome_text, greeting=greeting),
            'hold a throttled mail')
        if found is None:
            return None
        ready, changed = found
        for lim, before, after in changed:
            if greeting:
                log.warning('limiter %s paused for %ss after a 421 greeting: "%s"',
                            lim.name, lim.pause, delivery.outcome_text[:200])
            else:
                log.warning('limiter %s: rate cut from %.3g to %.3g/s after "%s"; it climbs '
                            'back to %.3g/s by %.3g/s each second', lim.name, before, after,
                            delivery.outcome_text[:200], lim.rate, lim.step)
        return ready

    def _all_suppressed(self, mail_id, queue, task, busy, suppressed, after):
        """Every recipient was suppressed while the mail waited: it ends `suppressed`,
        never sent. `after` is process()'s (then_fetch, fetch_min, then_claim)."""
        reply = 'every recipient is on the suppression list'
        attempt = {'at': time.time(), 'worker': self.worker_id, 'outcome': SUPPRESSED,
                   'code': 0, 'reply': reply, 'duration': 0}
        event = {'recipients': [{'address': r, 'outcome': 'suppressed', 'code': None,
                                 'reply': None} for r in suppressed], 'code': 0,
                 'reply': reply} if self.store.events.on else None
        then_fetch, fetch_min, then_claim = after
        fetched, claimed = self._finish(
            then_claim, mail_id, task, self.worker_id, busy, SUPPRESSED, attempt,
            last_error=reply, now=attempt['at'], event=event, suppressed_now=suppressed,
            then_fetch=then_fetch, fetch_min=fetch_min)
        self._log(mail_id, queue, suppressed, SUPPRESSED, 0, reply, 0)
        return SUPPRESSED, fetched, claimed

    @staticmethod
    def _event(delivery, outcome, recipients, suppressed):
        """Each recipient's outcome of this attempt, for the webhook body."""
        rows = []
        for rcpt in recipients:
            refused = delivery.refused.get(rcpt)
            if refused:
                rows.append({'address': rcpt, 'code': refused[0], 'reply': refused[1],
                             'outcome': 'refused' if refused[0] >= 500 else 'deferred'})
            elif delivery.ok:
                rows.append({'address': rcpt, 'outcome': 'delivered', 'code': delivery.code,
                             'reply': delivery.reply})
            else:
                rows.append({'address': rcpt, 'outcome': outcome, 'code': delivery.code or None,
                             'reply': delivery.reply})
        rows += [{'address': r, 'outcome': 'suppressed', 'code': None, 'reply': None}
                 for r in suppressed or ()]
        return {'recipients': rows, 'code': delivery.code, 'reply': delivery.outcome_text}

    def decide(self, delivery, owed, attempts, mail_id, queue):
        """(outcome, next attempt time, new task) for this delivery, given the
        recipients still owed the mail."""
        if not owed:
            return (SENT if delivery.ok else DEAD), 0, ''
        if gives_up(attempts, self.cfg):
            return DEAD, 0, ''
        next_at = time.time() + retry_delay(attempts, self.cfg)
        return RETRYING, next_at, self.new_task(mail_id, queue)

    def _log(self, mail_id, queue, recipients, outcome, code, error, duration):
        """One line a mail, formatted here: no %-args for logging to format again."""
        if self.full_recipients:
            to = ','.join(recipients)
        else:
            to = ','.join(sorted({r.rsplit('@', 1)[-1] for r in recipients}))
        level = logging.INFO if outcome == SENT else logging.WARNING
        if not log.isEnabledFor(level):
            return
        error = error[:200]
        duration_ms = duration * 1000
        fields = {'event': 'delivery', 'mail': mail_id, 'queue': queue, 'to': to,
                  'outcome': outcome, 'code': code or None,
                  'duration_ms': round(duration_ms, 1), 'reply': error or None}
        reply = f' reply="{error}"' if error else ''
        log.log(level, f'delivery mail={mail_id} queue={queue} to={to} outcome={outcome} '
                       f'code={code or "-"} duration_ms={duration_ms:.1f}{reply}',
                extra={'fields': fields})


def _until_redis_answers(action, what, max_delay=5.0):
    """Run `action`, retrying with backoff while Redis is unreachable or refusing
    for now (OOM, MISCONF, READONLY...)."""
    delay, logged = 0.2, False
    while True:
        try:
            return action()
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            if not logged:
                log.error('%s; will %s when it is back', outage_text(exc), what)
                logged = True
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
