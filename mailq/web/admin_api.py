"""The dashboard's actions and listings as JSON under /api, for programs.

Thin like api.py: parse, call mailq.admin (the same functions the pages
call), answer. Bodies of POSTs are optional JSON: {"ids": [...]} or
{"all": true} for list actions. Cron routes are in cron_api.py.
"""
import bottle

from .. import admin, service
from ..errors import ValidationError
from ..store.states import ACTIONS, LISTS, QUEUE_LIST, route_pattern
from .api import api_route, read_json
from .params import days, paging
from .responses import json_response
from .security import download

SMALL_BODY = 1024 * 1024
# Any mail action routes; admin.act answers 422 for one the list does not allow.
MAIL_VERBS = route_pattern(ACTIONS)


def action_body():
    """The optional JSON body of an action: {} when there is none."""
    if not bottle.request.content_length:
        return {}
    data = read_json(SMALL_BODY)
    if not isinstance(data, dict):
        raise ValidationError('body', 'must be a JSON object')
    return data


def _targets():
    data = action_body()
    return data.get('ids'), data.get('all') is True


def install(app, rt):
    @app.get('/api/stats/history')
    @api_route
    def history():
        return json_response(200, {'days': admin.history(rt, days())})

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

    @app.get('/api/destinations')
    @api_route
    def destinations():
        return json_response(200, admin.destinations(rt))

    @app.get('/api/queues/<name>')
    @api_route
    def queue(name):
        return json_response(200, admin.listing(rt, 'queue', *paging(), queue=name))

    @app.post('/api/queues/<name>/<verb:re:pause|resume>')
    @api_route
    def pause(name, verb):
        return json_response(200, admin.set_paused(rt, name, verb == 'pause'))

    @app.post('/api/queues/<name>/clear')
    @api_route
    def clear(name):
        return json_response(200, admin.clear_queue(rt, name))

    @app.post(f'/api/queues/<name>/<verb:re:{MAIL_VERBS}>')
    @api_route
    def queue_act(name, verb):
        ids, everything = _targets()
        return json_response(200, admin.act(rt, QUEUE_LIST.name, verb, ids, everything,
                                            queue=name))

    for kind in LISTS.values():
        _install_list(app, rt, kind)

    @app.post('/api/outbox/<mail_id>/release')
    @api_route
    def release(mail_id):
        to = action_body().get('to')
        if not to:
            raise ValidationError('to', 'give the address(es) to release the mail to')
        return json_response(202, service.release(rt, mail_id, to))

    @app.get('/api/mails/<mail_id>/message')
    @api_route
    def message(mail_id):
        return json_response(200, admin.mail_detail(rt, mail_id))

    @app.get('/api/mails/<mail_id>/raw')
    @api_route
    def raw(mail_id):
        return download(admin.raw_message(rt, mail_id), f'{mail_id}.eml', 'message/rfc822')

    @app.post(f'/api/mails/<mail_id>/<verb:re:{MAIL_VERBS}>')
    @api_route
    def mail_action(mail_id, verb):
        return json_response(200, admin.mail_action(rt, mail_id, verb))


def _install_list(app, rt, kind):
    """GET /api/<list> and POST /api/<list>/<action> (admin.act checks the action)."""
    @app.get(f'/api/{kind.name}', name=f'api_list_{kind.name}')
    @api_route
    def listing():
        return json_response(200, admin.listing(rt, kind.name, *paging()))

    @app.post(f'/api/{kind.name}/<verb:re:{MAIL_VERBS}>', name=f'api_act_{kind.name}')
    @api_route
    def act(verb):
        ids, everything = _targets()
        return json_response(200, admin.act(rt, kind.name, verb, ids, everything))
