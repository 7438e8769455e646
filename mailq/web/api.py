"""The JSON API under /api, plus /healthz. Thin: parse, call service, answer."""
import functools
import json

import bottle

from .. import check, search, service
from ..errors import MailqError, ValidationError
from .auth import authenticated
from .responses import error_of, error_response, json_response

JSON_TYPES = ('application/json',)


def api_route(func):
    """A MailqError becomes a JSON answer with the error's own status."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MailqError as exc:
            return error_of(exc)
    return wrapper


def _check_media_type(request):
    """415 unless the body says it is JSON (or says nothing): a form post or text/plain
    is not JSON, and is what a cross-site page can send without asking first."""
    given = request.get_header('Content-Type')
    if given is not None and not is_json_type(given):
        media_type = given.split(';')[0].strip().lower()
        raise error_response(415, f'Content-Type must be application/json, not '
                                  f'{media_type[:100]!r}', {'header': 'Content-Type'})


def is_json_type(content_type):
    """True for application/json and any +json type, parameters aside."""
    media_type = content_type.split(';')[0].strip().lower()
    return media_type in JSON_TYPES or media_type.endswith('+json')


def read_json(limit):
    """The request body as JSON: 415 when not sent as JSON, 413 over `limit` bytes,
    400 when malformed."""
    request = bottle.request
    _check_media_type(request)
    length = request.content_length
    if length > limit:
        raise error_response(413, f'body larger than {limit} bytes', {'limit': limit})
    raw = request.body.read(limit + 1)
    if len(raw) > limit:
        raise error_response(413, f'body larger than {limit} bytes', {'limit': limit})
    try:
        return json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as exc:
        raise error_response(400, f'malformed JSON: {exc}'[:300]) from None
    except RecursionError:      # '[' * 100000 fits the limit but not the parser's stack
        raise error_response(400, 'malformed JSON: nested too deeply') from None


def install(app, rt):
    limit = rt.config.limits.max_body_bytes

    @app.post('/api/mails')
    @api_route
    def post_mail():
        data = read_json(limit)
        key = bottle.request.get_header('Idempotency-Key')
        return json_response(202, service.send(rt, data, idempotency_key=key))

    @app.post('/api/mails/batch')
    @api_route
    def post_batch():
        data = read_json(limit)
        if not isinstance(data, dict) or 'mails' not in data:
            raise ValidationError('mails', 'body must be {"mails": [...]}')
        accepted = service.send_batch(rt, data['mails'])
        return json_response(202, {'ids': [m['id'] for m in accepted], 'mails': accepted})

    @app.get('/api/mails')
    @api_route
    def find_mails():
        query = bottle.request.query          # getunicode: UTF-8, not Latin-1
        return json_response(200, search.search(rt, {name: query.getunicode(name) for name in
                                                     search.PARAMS}))

    @app.get('/api/mails/<mail_id>')
    @api_route
    def get_mail(mail_id):
        return json_response(200, service.get_mail(rt, mail_id))

    @app.delete('/api/mails/<mail_id>')
    @api_route
    def delete_mail(mail_id):
        return json_response(200, service.cancel(rt, mail_id))

    @app.get('/api/stats')
    @api_route
    def stats():
        return json_response(200, service.stats(rt))

    @app.get('/healthz')
    def healthz():
        """Open to load balancers: details only for a caller who may see the rest."""
        ok, body = check.healthz(rt, detailed=authenticated(rt.config.web))
        return json_response(200 if ok else 503, body)
