"""The ceiling of any HTTP enqueue: a minimal WSGI app served by the server `mailq web`
uses, with the same options, doing one Redis LPUSH per POST and answering a small JSON
body. `python -m bench.ceiling INI` serves it on the [web] port of INI."""
import sys

import redis

from mailq.config import load
from mailq.web.app import serve_wsgi

KEY = 'bench:ceiling'
ANSWER = b'{"id":"0","status":"queued"}'


def make_app(client):
    def app(environ, start_response):
        length = int(environ.get('CONTENT_LENGTH') or 0)
        client.lpush(KEY, environ['wsgi.input'].read(length))
        start_response('202 Accepted', [('Content-Type', 'application/json'),
                                        ('Content-Length', str(len(ANSWER)))])
        return [ANSWER]
    return app


def main(argv=None):
    config = load((sys.argv[1:] if argv is None else argv)[0])
    serve_wsgi(make_app(redis.Redis.from_url(config.redis.url)), config)


if __name__ == '__main__':
    main()
