"""Webhooks and the suppression list over HTTP, and their dashboard tabs.

    GET  /api/webhooks                       endpoints, state and recent deliveries
    POST /api/webhooks/<name>/retry|resume   try pending events now; unpause
    GET  /api/suppressions?page=N&q=text     one page of the list
    POST /api/suppressions {"address", "reason"}
    DELETE /api/suppressions/<address>
    GET  /webhooks, /suppressed              the dashboard's tabs (forms post below)

Thin like api.py: every route calls mailq.webhooks or mailq.suppression, the
functions behind the CLI too. Secrets and URL queries are never shown.
"""
import bottle

from .. import suppression, webhooks
from .admin_api import action_body
from .api import api_route
from .responses import json_response
from .dashboard import action, page, render


def install(app, rt):
    @app.get('/api/webhooks')
    @api_route
    def list_webhooks():
        return json_response(200, {'endpoints': webhooks.endpoints(rt)})

    @app.post('/api/webhooks/<name>/<verb:re:retry|resume>')
    @api_route
    def webhook_action(name, verb):
        return json_response(200, getattr(webhooks, verb)(rt, name))

    @app.get('/api/suppressions')
    @api_route
    def list_suppressions():
        query = bottle.request.query
        return json_response(200, suppression.list_suppressions(
            rt, query.get('page') or 1, query.getunicode('q') or ''))

    @app.post('/api/suppressions')
    @api_route
    def add_suppression():
        data = action_body()
        return json_response(201, suppression.add(rt, data.get('address'), data.get('reason')))

    @app.delete('/api/suppressions/<address>')
    @api_route
    def remove_suppression(address):
        return json_response(200, suppression.remove(rt, address))

    @app.get('/webhooks')
    @page(rt)
    def webhooks_page():
        return render(rt, 'webhooks.html', endpoints=webhooks.endpoints(rt))

    @app.post('/webhooks/<name>/<verb:re:retry|resume>')
    @action(rt)
    def webhooks_form(name, verb):
        getattr(webhooks, verb)(rt, name)
        return {'did': verb}

    @app.get('/suppressed')
    @page(rt)
    def suppressed_page():
        query = bottle.request.query
        listing = suppression.list_suppressions(rt, query.get('page') or 1,
                                                query.getunicode('q') or '')
        return render(rt, 'suppressed.html', listing=listing)

    @app.post('/suppressed/<verb:re:add|remove>')
    @action(rt)
    def suppressed_form(verb):
        forms = bottle.request.forms
        address = forms.getunicode('address') or ''
        if verb == 'add':
            suppression.add(rt, address, forms.getunicode('reason') or None)
        else:
            suppression.remove(rt, address)
        return {'did': verb}
