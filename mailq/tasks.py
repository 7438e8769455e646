"""The one Huey instance every role shares, and its one task: deliver a mail.

Web, CLI and worker all build the same Huey (MailStorage on the configured
Redis, JSON messages). The task's message carries only the mail id and queue;
the mail itself is a JSON record (store.py).
"""
import json
import uuid

from huey import Huey

from .fetch import MailStorage
from .serializer import JSONSerializer
from .store.taskformat import short_task


class MailHuey(Huey):
    """Huey with a prebuilt storage; results are not kept (outcomes live in the record)."""

    def __init__(self, storage):
        self._prebuilt_storage = storage
        super().__init__(name=storage.name, results=False, utc=True,
                         serializer=JSONSerializer())

    def get_storage(self, **kwargs):
        return self._prebuilt_storage

    # A mail is never revoked through Huey (a stale task is dropped by fetch.lua), so
    # skip Huey's two Redis round trips per task for revoke flags.
    def is_revoked(self, task, timestamp=None, peek=True):
        return False

    def delete(self, key):
        return False


def create_huey(store, connection_pool, queues, processor=None):
    """Build the Huey instance and register `deliver` on it."""
    huey = MailHuey(MailStorage(store, connection_pool, queues))

    @huey.task(name='deliver')
    def deliver(mail_id, queue=None):
        """Run in a worker: deliver the mail whose task this thread just fetched."""
        fetched = huey.storage.current()
        if processor is None or fetched is None:
            raise RuntimeError('deliver runs only inside a mailq worker')
        fetched_queue, task, claim = fetched
        then_fetch, fetch_min, then_claim = huey.storage.after_outcome()
        outcome, upcoming, claimed = processor.process(
            mail_id, fetched_queue, task, claim, then_fetch=then_fetch, fetch_min=fetch_min,
            then_claim=then_claim)
        huey.storage.keep(upcoming, claimed)
        return outcome

    huey.deliver = deliver
    return huey


def new_task(huey, mail_id, queue):
    """The stored task for one delivery of `mail_id` (a fresh task id each time): the
    short form of store/taskformat.py, which the serializer loads as the Message Huey's
    deliver.s(mail_id, queue=queue) would be (tests/test_tasks.py holds them equal).
    An id or queue the short form cannot carry gets the JSON Huey would write."""
    return short_task(mail_id, queue) or \
        _TASK % (uuid.uuid4(), json.dumps(mail_id), json.dumps(queue))


_TASK = ('{"id":"%s","name":"mailq.tasks.deliver","retries":0,"retry_delay":0,'
         '"args":[%s],"kwargs":{"queue":%s},"retry_backoff":0}')
