"""The dashboard's actions and listings as JSON under /api, for programs.

Thin like api.py: parse, call mailq.admin (the same functions the pages
call), answer. Bodies of POSTs are optional JSON: {"ids": [...]} or
{"all": true} for list actions. Cron routes are in cron_api.py.
"""
import bottle

from .. import admin
from ..errors import ValidationError
from .api import api_route, read_json
from .app import json_response

LISTS = ('scheduled', 'retrying', 'dead', 'outbox')
SMALL_BODY = 1024 * 1024


def _body():
    """The optional JSON body of an action: {} when there is none."""
    if not bottle.request.content_length:
        return {}
    data = read_json(SMALL_BODY)
    if not isinstance(data, dict):
        raise ValidationError('body', 'must be a JSON object')
    return data


def _targets():
    data = _body()
    return data.get('ids'), data.get('all') is True


def _days():
    """?days= as a number; anything else becomes -1, which admin.history refuses (422)."""
    try:
        return int(bottle.request.query.get('days', '30'))
    except ValueError:      # not a number, or '²', which passes str.isdigit()
        return -1


def _paging():
    query = bottle.request.query
    return query.get('page') or 1, query.getunicode('q') or ''


def install(app, rt):
    @app.get('/api/stats/history')
    @api_route
    def history():
        return json_response(200, {'days': admin.history(rt, _days())})

    @app.get('/api/redis')
    @api_route
    def redis_info():
        return json_response(200, admin.redis_info(rt))

    @app.get('/api/workers')
    @api_route
    def workers():
        return json_response(200, {'workers': admin.workers(rt)})

    @app.post('/api/workers/<worker_id>/<command:re:quiet|stop>')
    @api_route
    def worker_command(worker_id, command):
        return json_response(202, admin.command_worker(rt, worker_id, command))

    @app.get('/api/queues')
    @api_route
    def queues():
        return json_response(200, {'queues': admin.queues(rt)})

    @app.get('/api/queues/<name>')
    @api_route
    def queue(name):
        return json_response(200, admin.listing(rt, 'queue', *_paging(), queue=name))

    @app.post('/api/queues/<name>/<verb:re:pause|resume>')
    @api_route
    def pause(name, verb):
        return json_response(200, admin.set_paused(rt, name, verb == 'pause'))

    @app.post('/api/queues/<name>/clear')
    @api_route
    def clear(name):
        return json_response(200, admin.clear_queue(rt, name))

    @app.post('/api/queues/<name>/delete')
    @api_route
    def queue_delete(name):
        ids, everything = _targets()
        return json_response(200, admin.act(rt, 'queue', 'delete', ids, everything,
                                            queue=name))

    for kind in LISTS:
        _install_list(app, rt, kind)

    @app.get('/api/mails/<mail_id>/message')
    @api_route
    def message(mail_id):
        return json_response(200, admin.mail_detail(rt, mail_id))

    @app.get('/api/mails/<mail_id>/raw')
    @api_route
    def raw(mail_id):
        bottle.response.content_type = 'message/rfc822'
        return admin.raw_message(rt, mail_id)

    @app.post('/api/mails/<mail_id>/<verb:re:enqueue|retry|kill|delete>')
    @api_route
    def mail_action(mail_id, verb):
        return json_response(200, admin.mail_action(rt, mail_id, verb))

def _install_list(app, rt, kind):
    @app.get(f'/api/{kind}', name=f'api_list_{kind}')
    @api_route
    def listing():
        return json_response(200, admin.listing(rt, kind, *_paging()))

    @app.post(f'/api/{kind}/<verb>', name=f'api_act_{kind}')
    @api_route
    def act(verb):
        ids, everything = _targets()
        return json_response(200, admin.act(rt, kind, verb, ids, everything))
