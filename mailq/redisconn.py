"""Redis connections from the configured URL, with timeouts that fail fast.

A command never blocks forever when Redis is gone: the web API answers 503 and
workers back off and reconnect.
"""
import redis

SOCKET_TIMEOUT = 5
CONNECT_TIMEOUT = 2


def connection_pool(url):
    return redis.ConnectionPool.from_url(
        url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=30, socket_keepalive=True)


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
