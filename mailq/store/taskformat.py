"""A mail's delivery task as it is stored, in its queue or set and in its record.

The task is `d1:<task id>:<mail id>:<queue>`, about 45 bytes: Huey's JSON message for
the same call was 181, held twice per mail (container and record), and over the 64
bytes up to which Redis keeps a hash as a compact listpack. Tasks in Huey's JSON form,
written by earlier releases, still load (serializer.py, task_mail_id, task_queue).
"""
import re
import secrets

PREFIX = 'd1:'
DELIVER = 'mailq.tasks.deliver'       # the name Huey registered the deliver task under
# A mail id that can go in the short form; anything else gets the JSON form.
_PLAIN = re.compile(r'[A-Za-z0-9_.@+-]+')


def short_task(mail_id, queue):
    """The short form of a fresh task for `mail_id` on `queue`, or None when the id or
    queue cannot be written in it."""
    if not isinstance(queue, str) or not queue or not _PLAIN.fullmatch(mail_id):
        return None
    return f'{PREFIX}{secrets.token_hex(6)}:{mail_id}:{queue}'


def parse_short(task):
    """(task id, mail id, queue) of a short-form task (str or bytes), else None."""
    if isinstance(task, bytes):
        if not task.startswith(b'd1:'):
            return None
        task = task.decode('utf-8', 'replace')
    elif not isinstance(task, str) or not task.startswith(PREFIX):
        return None
    parts = task[len(PREFIX):].split(':', 2)
    return tuple(parts) if len(parts) == 3 else None


def message_fields(task_id, mail_id, queue):
    """The fields of the Huey message a short task stands for (as Huey's JSON had them)."""
    return {'id': task_id, 'name': DELIVER, 'retries': 0, 'retry_delay': 0,
            'args': [mail_id], 'kwargs': {'queue': queue}, 'retry_backoff': 0}
