"""mailq: a durable mail queue for small deployments, on Huey and Redis.

    import mailq
    mailq.send(to='ann@example.com', template='welcome', context={'name': 'Ann'})

`send()` takes the same fields as `POST /api/mails` and shares its code path.
"""
__version__ = '0.1.0'


def send(config=None, idempotency_key=None, **mail):
    """Enqueue one mail; returns {id, status, queue, send_at}. `config` is a path;
    pass the sender as `sender=` (or `**{'from': ...}`)."""
    from . import service
    from .runtime import default_runtime
    if 'sender' in mail:            # `from` is a Python keyword
        mail['from'] = mail.pop('sender')
    return service.send(default_runtime(config), mail, idempotency_key=idempotency_key)
