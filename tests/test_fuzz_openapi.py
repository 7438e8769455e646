"""GET /api/openapi.json describes the API the server really has."""
import pytest

from mailq.compose import FIELDS
from support.ini import write_ini
from support.web_proc import WebProcess


@pytest.fixture(scope='module')
def web(redis_server, tmp_path_factory):
    ini = write_ini(tmp_path_factory.mktemp('openapi') / 'mailq.ini', {
        'redis': {'url': redis_server.url, 'prefix': 'openapi'},
        'limits': {'max_batch': '7', 'max_recipients': '3'}})
    server = WebProcess(ini)
    yield server
    server.stop()


def test_document_is_openapi_3_and_matches_compose(web):
    status, headers, doc = web.request('GET', '/api/openapi.json')
    assert status == 200 and headers['Content-Type'].startswith('application/json')
    assert doc['openapi'].startswith('3.')
    assert set(doc['components']['schemas']['Mail']['properties']) == FIELDS
    assert {'/api/mails', '/api/mails/batch', '/api/mails/{mail_id}', '/api/stats',
            '/healthz'} <= set(doc['paths'])
    batch = doc['paths']['/api/mails/batch']['post']['requestBody']['content']
    assert batch['application/json']['schema']['properties']['mails']['maxItems'] == 7
    assert '3 recipients' in doc['components']['schemas']['Mail']['description']


def test_every_documented_operation_exists(web):
    _, _, doc = web.request('GET', '/api/openapi.json')
    for path, operations in doc['paths'].items():
        for method in operations:
            status, _, data = web.request(method.upper(), path.replace('{mail_id}', 'nope'),
                                          body={} if method == 'post' else None)
            assert status not in (404, 405) or 'no mail' in (data or {}).get('error', ''), \
                (method, path, status)
            assert set(operations[method]['responses']) >= {str(status)} or status == 202, \
                (method, path, status, data)


def test_the_idempotency_answers_are_documented(web):
    """Issue 11 item 15: the duplicate reply and the 409 of a key reused with another
    request, as the server gives them, are in the document."""
    _, _, doc = web.request('GET', '/api/openapi.json')
    mail = {'to': 'ann@example.com', 'subject': 's', 'text': 't'}
    key = {'Idempotency-Key': 'openapi-15'}
    first = web.request('POST', '/api/mails', mail, headers=key)
    again = web.request('POST', '/api/mails', mail, headers=key)
    other = web.request('POST', '/api/mails', {**mail, 'text': 'other'}, headers=key)
    assert (first[0], again[0], other[0]) == (202, 202, 409)
    accepted = doc['components']['schemas']['Accepted']['properties']
    assert set(again[2]) <= set(accepted) and again[2]['duplicate'] is True
    for word in ('queued', 'scheduled', 'suppressed'):
        assert word in accepted['status']['description']
    for path in ('/api/mails', '/api/mails/batch'):
        assert 'idempotency key' in doc['paths'][path]['post']['responses']['409']['description']
