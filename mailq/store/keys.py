"""Every Redis key name mailq uses, in one place, under the configured prefix.

    <p>:m:<id>              hash    a mail's record (JSON-safe fields, never a pickle)
    <p>:m:<id>:attempts     string  the delivery attempts, one JSON line each (a string
                                    costs about 100 B less than a list of one entry)
    <p>:m:<id>:log          list    the same, one JSON entry each, of records written
                                    before the attempts key (they keep adding to it)
    <p>:m:<id>:body         string  the message as sent, zlib-compressed when that saves
                                    room (body.py); a sent mail's expires after
                                    keep_sent_bodies. Records written before this layout hold
                                    it in the record's `raw` field instead
    <p>:q:<queue>           list    the queue's Huey tasks (workers pop RIGHT)
    <p>:wake:<queue>        list    wake tokens for idle workers (BLPOP), kept short
    <p>:schedule            zset    tasks of scheduled mails, by send time
    <p>:retry               zset    tasks of retrying mails, by next attempt
    <p>:dead                zset    ids of dead mails, by time of death
    <p>:outbox              zset    ids of mails kept by transport = outbox
    <p>:paused              set     paused queue names
    <p>:idem:<key>          string  the mail id of an idempotency key (expires)
    <p>:workers             zset    live worker ids, by last beat (Redis time)
    <p>:w:<worker>          hash    a worker's details and beat
    <p>:inflight:<worker>   list    tasks a worker has fetched and not yet recorded
    <p>:busy:<worker>       hash    thread -> the mail it is sending
    <p>:ahead:<worker>      hash    thread -> the task it fetched and has not claimed yet
    <p>:cmd:<worker>        list    commands (quiet, stop) for a worker's heartbeat
    <p>:stat:<name>[:<day>] string/hash  counters and metrics
    <p>:cron:<job>          hash    since, last_fire, skip_mark
    <p>:cron:<job>:fired    zset    claimed fire times
    <p>:cron:<job>:pending  hash    fire time -> claim not yet recorded
    <p>:cron:<job>:runs     list    run history, newest first
    <p>:cron:paused         set     paused cron job names
    <p>:suppressed          hash    normalised address -> JSON (reason, reply, mail, until...)
    <p>:suppressed:order    zset    suppressed addresses, by time of suppression
    <p>:hook:<name>:events  stream  events for webhook endpoint <name> (group 'dispatch')
    <p>:hook:<name>         hash    endpoint state: failures in a row, paused, retry_now
    <p>:hook:<name>:log     list    recent deliveries to the endpoint (JSON), newest first
    <p>:events              channel pub/sub: a JSON line per new mail and per outcome, for
                                    the dashboard's live pages (GET /api/events); no key
    <p>:stat:outcomes:<day> hash    attempts per outcome (sent, retrying, dead, suppressed)
                                    and per queue (queue:<name>) that day (UTC)
    <p>:held                zset    tasks of held mails (waiting for a limiter), by ready time
    <p>:limit:<name>        hash    a limiter's state: tokens, ts, cut_rate, cut_at,
                                    paused_until, held_until, last_reply, last_reply_at
    <p>:limit:<name>:slots  zset    slot holders (a thread's session, or a mail), by lease end
    <p>:limit:<name>:sent   zset    mails sent in the last 24 h (daily_quota), by time
    <p>:limit:<name>:free   list    wake tokens for threads waiting for a session slot
    <p>:limit:<name>:waiting zset   tasks of mails held for a slot of group <name>, by
                                    time held (the one leaving a slot wakes the first)
    <p>:ix:<kind>:<value>   zset    search index (store/search.py): mail ids by created_at,
                                    kind 'rcpt' (normalised address), 'msgid', 'idem', of a
                                    value with two mails or more (or written before buckets)
    <p>:ixb:<kind>:<l>:<n>  hash    search index buckets of values with one mail: a digest of
                                    the value -> '<mail id> <created_at>'; level l 0 or 1
    <p>:ix:since            string  when this layout first ran: mails older than it are
                                    not in the indexes
"""


class Keys:
    def __init__(self, prefix):
        self.prefix = prefix + ':'
        self.schedule = self.prefix + 'schedule'
        self.retry = self.prefix + 'retry'
        self.dead = self.prefix + 'dead'
        self.outbox = self.prefix + 'outbox'
        self.paused = self.prefix + 'paused'
        self.workers = self.prefix + 'workers'
        self.cron_paused = self.prefix + 'cron:paused'
        self.suppressed = self.prefix + 'suppressed'
        self.suppressed_order = self.prefix + 'suppressed:order'
        self.events = self.prefix + 'events'
        self.held = self.prefix + 'held'
        self.index_since = self.prefix + 'ix:since'
        self.index_pattern = self.prefix + 'ix:*:*'

    def record(self, mail_id):
        return f'{self.prefix}m:{mail_id}'

    def log(self, mail_id):
        return f'{self.prefix}m:{mail_id}:log'

    def attempts(self, mail_id):
        return f'{self.prefix}m:{mail_id}:attempts'

    def body(self, mail_id):
        return f'{self.prefix}m:{mail_id}:body'

    def queue(self, name):
        return f'{self.prefix}q:{name}'

    def wake(self, name):
        return f'{self.prefix}wake:{name}'

    def idempotency(self, key):
        return f'{self.prefix}idem:{key}'

    def inflight(self, worker_id):
        return f'{self.prefix}inflight:{worker_id}'

    def busy(self, worker_id):
        return f'{self.prefix}busy:{worker_id}'

    def ahead(self, worker_id):
        return f'{self.prefix}ahead:{worker_id}'

    def worker(self, worker_id):
        return f'{self.prefix}w:{worker_id}'

    def commands(self, worker_id):
        return f'{self.prefix}cmd:{worker_id}'

    def stat(self, name, day=None):
        return f'{self.prefix}stat:{name}' + (f':{day}' if day else '')

    def cron_job(self, job):
        return f'{self.prefix}cron:{job}'

    def cron_fired(self, job):
        return f'{self.prefix}cron:{job}:fired'

    def cron_pending(self, job):
        return f'{self.prefix}cron:{job}:pending'

    def cron_runs(self, job):
        return f'{self.prefix}cron:{job}:runs'

    def hook_events(self, name):
        return f'{self.prefix}hook:{name}:events'

    def hook(self, name):
        return f'{self.prefix}hook:{name}'

    def hook_log(self, name):
        return f'{self.prefix}hook:{name}:log'

    def limit(self, name):
        return f'{self.prefix}limit:{name}'

    def limit_slots(self, name):
        return f'{self.prefix}limit:{name}:slots'

    def limit_sent(self, name):
        return f'{self.prefix}limit:{name}:sent'

    def limit_free(self, name):
        return f'{self.prefix}limit:{name}:free'

    def limit_waiting(self, name):
        return f'{self.prefix}limit:{name}:waiting'

    def index(self, kind, value):
        return f'{self.prefix}ix:{kind}:{value}'

    def index_bucket(self, kind, level, number):
        return f'{self.prefix}ixb:{kind}:{level}:{number}'
