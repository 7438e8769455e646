"""Redis connections from the configured URL, with timeouts that fail fast.

A command never blocks forever when Redis is gone: the web API answers 503 and
workers back off and reconnect.

`redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]`
asks the Sentinels for the current master of `service_name` and follows a
failover: connections to the old master fail, the next one goes to the new.
The password is the master's; the Sentinels themselves are asked without one.
"""
import re
from dataclasses import dataclass
from urllib.parse import unquote

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

SOCKET_TIMEOUT = 5
CONNECT_TIMEOUT = 2
SENTINEL_SCHEME = 'redis+sentinel://'
SENTINEL_PORT = 26379


def connection_pool(url):
    """A pool for redis.Redis(connection_pool=...) and Huey's RedisStorage alike."""
    options = dict(socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
                   health_check_interval=30, socket_keepalive=True)
    if url.startswith(SENTINEL_SCHEME):
        return sentinel_pool(parse_sentinel_url(url), options)
    return redis.ConnectionPool.from_url(url, **options)


def answers(url):
    """Does a Redis answer at `url` (even one that wants a password)? For --ensure-redis."""
    client = redis.Redis(connection_pool=connection_pool(url))
    try:
        return client.ping()
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    except redis.ResponseError:
        return True   # it answers (e.g. asks for a password)
    finally:
        client.connection_pool.disconnect()


# The userinfo of a URL runs from :// to the last @, so a password with an unencoded
# / or ? in it is still found; redis-py also takes ?password=.
_USERINFO = re.compile(r'^([a-z][a-z0-9+.-]*://)(.*)@', re.IGNORECASE | re.DOTALL)
_QUERY_PASSWORD = re.compile(r'([?&]password=)([^&#]*)', re.IGNORECASE)


def redis_passwords(url):
    """The passwords in a Redis URL, as written and percent-decoded, for redaction."""
    userinfo = _USERINFO.match(url)
    found = [userinfo.group(2).partition(':')[2]] if userinfo else []
    found += [m.group(2) for m in _QUERY_PASSWORD.finditer(url)]
    return sorted({spelling for raw in found for spelling in (raw, unquote(raw)) if spelling})


def redacted_url(url):
    """The URL fit to show on /healthz or a terminal: its password replaced by ***."""
    userinfo = _USERINFO.match(url)
    if userinfo and ':' in userinfo.group(2):
        user = userinfo.group(2).partition(':')[0]
        url = f'{userinfo.group(1)}{user}:***@{url[userinfo.end():]}'
    return _QUERY_PASSWORD.sub(r'\1***', url)


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple          # ((host, port), ...)
    service: str
    db: int = 0
    username: str = None
    password: str = None


def parse_sentinel_url(url):
    """SentinelURL of a redis+sentinel:// URL; ValueError says what is wrong."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f'not a {SENTINEL_SCHEME} URL')
    rest = url[len(SENTINEL_SCHEME):].split('?', 1)[0]
    netloc, _, path = rest.partition('/')
    credentials, _, hosts = netloc.rpartition('@')
    username, _, password = credentials.partition(':')
    sentinels = tuple(_host_port(part) for part in hosts.split(','))
    parts = [p for p in path.split('/') if p]
    if not parts or len(parts) > 2:
        raise ValueError('needs /service_name or /service_name/db after the sentinels')
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f'db must be a number, not {parts[1]!r}')
    return SentinelURL(sentinels, unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0,
                       unquote(username) or None, unquote(password) or None)


def _host_port(text):
    text = text.strip()
    if text.startswith('['):             # [IPv6]:port
        host, _, port = text[1:].partition(']')
        port = port.lstrip(':')
    else:
        host, _, port = text.partition(':')
    if not host:
        raise ValueError(f'bad sentinel address {text!r} (host:port)')
    if port and not port.isdigit():
        raise ValueError(f'bad port in sentinel address {text!r}')
    return host, int(port) if port else SENTINEL_PORT


def sentinel_pool(parsed, options):
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs={
        'socket_timeout': options['socket_timeout'],
        'socket_connect_timeout': options['socket_connect_timeout']})
    return SentinelConnectionPool(parsed.service, sentinel, db=parsed.db,
                                  username=parsed.username, password=parsed.password,
                                  **options)


# Replies with which Redis says "not now" rather than "never": it is loading, busy
# in a script, out of memory, failing to persist, or a replica after a failover.
OUTAGE_CODES = frozenset({'LOADING', 'BUSY', 'OOM', 'MISCONF', 'READONLY', 'NOREPLICAS',
                          'MASTERDOWN', 'TRYAGAIN', 'CLUSTERDOWN'})


def is_outage(exc):
    """True when `exc` means Redis cannot serve us for now (so: wait, retry, answer 503),
    False for errors that retrying will not cure (a bug, a wrong type)."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return True
    if not isinstance(exc, redis.ResponseError):
        return False
    return _reply_code(exc) in OUTAGE_CODES


def _reply_code(exc):
    """The error code of a Redis reply ('BUSY', 'OOM'...); a pipeline's errors carry it
    after redis-py's "Command # n (...) of pipeline caused error: "."""
    text = str(exc).rpartition('of pipeline caused error: ')[2]
    return getattr(exc, 'status_code', None) or text.split(' ', 1)[0]


def outage_text(exc):
    """'Redis unreachable (...)' for a lost connection, 'Redis unavailable (CODE ...)'
    for a Redis that answers but refuses for now."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return f'Redis unreachable ({exc})'
    code = getattr(exc, 'status_code', None)
    reason = f'{code} {exc}' if code and not str(exc).startswith(code) else str(exc)
    return f'Redis unavailable ({reason})'


def persistence(client):
    """(aof_enabled, rdb_save_configured) of the server, for the 'nothing on disk' warning."""
    info = client.info('persistence')
    aof = bool(int(info.get('aof_enabled', 0)))
    save = client.config_get('save').get('save', '')
    return aof, bool(save.strip())


def persistence_warning(client):
    """A warning text when a Redis restart would lose queued mail, else None."""
    try:
        aof, rdb = persistence(client)
    except redis.ResponseError:   # CONFIG may be disabled on managed Redis
        return None
    if aof or rdb:
        return None
    return ('Redis keeps nothing on disk (appendonly no, no save points): '
            'a Redis restart loses every queued mail. Set appendonly yes.')
