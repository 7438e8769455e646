"""Callables for cron job tests: what a user's `myapp.digest` module looks like."""
USERS = ['ann@example.com', 'bob@example.com', 'cy@example.com']
calls = []


def digest(fired_at):
    """One mail per user, as the HTTP API takes them."""
    calls.append(fired_at)
    return [{'to': user, 'subject': f'Digest {fired_at:%Y-%m-%d %H:%M} for {user}',
             'text': 'Your digest.'} for user in USERS]


def fails_once(fired_at):
    """Raises on its first call only: a database that was down for one run."""
    calls.append(fired_at)
    if len(calls) == 1:
        raise RuntimeError('database is down')
    return digest(fired_at)


def nothing(fired_at):
    return []


def not_a_list(fired_at):
    return 'oops'


def bad_mail(fired_at):
    return [{'to': 'ann@example.com', 'subject': 'ok', 'text': 'ok'},
            {'to': 'nobody', 'subject': 'bad', 'text': 'bad'}]


def odd_address(fired_at):
    """An address the stdlib header parser trips over (AttributeError before issue 11)."""
    return [{'to': 'ann@example.com', 'cc': ':; <a@example.com>', 'subject': 'odd',
             'text': 'odd'}]


def no_arguments():
    return []


NOT_CALLABLE = 42


redis_url = None     # set by the test (or drive.py) that uses `counted`


def counted(fired_at):
    """Counts its calls per fire time in Redis (across processes): exactly once is 1 each."""
    import redis
    client = redis.Redis.from_url(redis_url)
    client.incr(f'test:calls:{fired_at.isoformat()}')
    client.close()
    return [{'to': 'ops@example.com', 'subject': f'count {fired_at.isoformat()}',
             'text': 'counted'}]
