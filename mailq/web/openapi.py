"""GET /api/openapi.json: an OpenAPI 3 description of the core JSON API.

Built from the running config, so the limits it states (recipients, batch size,
body size) are the ones the server enforces. Clients and fuzzers read it.
"""
from .responses import json_response

ADDRESSES = {'oneOf': [{'type': 'string'}, {'type': 'array', 'items': {'type': 'string'}}]}
ERROR = {'type': 'object', 'required': ['error', 'details'],
         'properties': {'error': {'type': 'string'}, 'details': {'type': 'object'}}}


def mail_schema(limits):
    properties = {
        'to': ADDRESSES, 'cc': ADDRESSES, 'bcc': ADDRESSES, 'reply_to': ADDRESSES,
        'from': {'type': 'string'}, 'subject': {'type': 'string'},
        'text': {'type': 'string'}, 'html': {'type': 'string'},
        'template': {'type': 'string', 'description': 'instead of subject/text/html'},
        'context': {'type': 'object', 'description': 'template variables'},
        'headers': {'type': 'object', 'additionalProperties': {'type': 'string'}},
        'attachments': {'type': 'array', 'items': {
            'type': 'object', 'required': ['filename', 'content'],
            'properties': {'filename': {'type': 'string', 'maxLength': 255},
                           'content_type': {'type': 'string'},
                           'content': {'type': 'string', 'format': 'byte'}}},
            'description': f'at most {limits.max_attachment_bytes} bytes in all, decoded'},
        'queue': {'type': 'string'},
        'send_at': {'type': 'string', 'format': 'date-time'},
        'delay': {'type': 'number', 'minimum': 0},
        'idempotency_key': {'type': 'string', 'minLength': 1, 'maxLength': 200},
        'metadata': {'type': 'object', 'description': 'at most 1 KB as JSON; returned by '
                     'GET /api/mails/<id> and carried in every webhook'},
    }
    return {'type': 'object', 'required': ['to'], 'additionalProperties': False,
            'properties': properties,
            'description': f'at most {limits.max_recipients} recipients (to + cc + bcc)'}


def _answers(ok_status, ok_schema, *errors):
    answers = {str(ok_status): {'description': 'success', 'content': {
        'application/json': {'schema': ok_schema}}}}
    for status, text in errors:
        answers[str(status)] = {'description': text, 'content': {
            'application/json': {'schema': {'$ref': '#/components/schemas/Error'}}}}
    return answers


def document(config):
    limits = config.limits
    accepted = {'type': 'object', 'properties': {
        'id': {'type': 'string'},
        'status': {'type': 'string', 'description': 'queued, scheduled, or suppressed (every '
                   'recipient on the suppression list); with duplicate, the earlier '
                   "mail's status now"},
        'queue': {'type': 'string'}, 'send_at': {'type': ['string', 'null']},
        'suppressed': {'type': 'array', 'items': {'type': 'string'}},
        'duplicate': {'type': 'boolean', 'description': 'true: an idempotency key seen '
                      'before with the same request; this is the earlier mail'}}}
    body_errors = ((400, 'malformed JSON'), (401, 'authentication required'),
                   (409, 'idempotency key seen before with another request'),
                   (413, f'body larger than {limits.max_body_bytes} bytes'),
                   (415, 'Content-Type is not application/json'),
                   (422, 'invalid mail; details name the field'), (503, 'Redis unreachable'))
    mail_id = [{'name': 'mail_id', 'in': 'path', 'required': True, 'schema': {'type': 'string'}}]
    return {
        'openapi': '3.1.0',
        'info': {'title': 'mailq', 'version': '1',
                 'description': 'A durable mail queue. Every error is JSON.'},
        'components': {
            'schemas': {'Mail': mail_schema(limits), 'Accepted': accepted, 'Error': ERROR},
            'securitySchemes': {'basic': {'type': 'http', 'scheme': 'basic'},
                                'token': {'type': 'http', 'scheme': 'bearer'}}},
        'security': [{'basic': []}, {'token': []}, {}],
        'paths': {
            '/api/mails': {'get': {
                'summary': 'Search by recipient, Message-ID or idempotency key (give one): '
                           'newest first, 25 a page; `next` is the cursor of the next page',
                'operationId': 'findMails',
                'parameters': [{'name': name, 'in': 'query', 'required': False,
                                'schema': {'type': 'string'}}
                               for name in ('recipient', 'message_id', 'idempotency_key',
                                            'cursor')],
                'responses': _answers(200, {'type': 'object', 'properties': {
                    'mails': {'type': 'array', 'items': {'type': 'object'}},
                    'next': {'type': ['string', 'null']},
                    'indexed_since': {'type': ['string', 'null']}}},
                    (401, 'authentication'), (422, 'not one search field, or a bad one'),
                    (503, 'Redis down'))},
                'post': {
                'summary': 'Accept one mail', 'operationId': 'sendMail',
                'parameters': [{'name': 'Idempotency-Key', 'in': 'header', 'required': False,
                                'schema': {'type': 'string'}}],
                'requestBody': {'required': True, 'content': {'application/json': {
                    'schema': {'$ref': '#/components/schemas/Mail'}}}},
                'responses': _answers(202, {'$ref': '#/components/schemas/Accepted'},
                                      *body_errors)}},
            '/api/mails/batch': {'post': {
                'summary': 'Accept several mails: all or none', 'operationId': 'sendBatch',
                'requestBody': {'required': True, 'content': {'application/json': {'schema': {
                    'type': 'object', 'required': ['mails'], 'properties': {'mails': {
                        'type': 'array', 'minItems': 1, 'maxItems': limits.max_batch,
                        'items': {'$ref': '#/components/schemas/Mail'}}}}}}},
                'responses': _answers(202, {'type': 'object', 'properties': {
                    'ids': {'type': 'array', 'items': {'type': 'string'}},
                    'mails': {'type': 'array',
                              'items': {'$ref': '#/components/schemas/Accepted'}}}},
                    *body_errors)}},
            '/api/mails/{mail_id}': {
                'get': {'summary': 'A mail and its attempts', 'operationId': 'getMail',
                        'parameters': mail_id,
                        'responses': _answers(200, {'type': 'object'}, (401, 'authentication'),
                                              (404, 'no such mail'), (503, 'Redis down'))},
                'delete': {'summary': 'Cancel a mail not sent yet', 'operationId': 'cancelMail',
                           'parameters': mail_id,
                           'responses': _answers(200, {'type': 'object'},
                                                 (401, 'authentication'), (404, 'no such mail'),
                                                 (409, 'already sent or sending'),
                                                 (503, 'Redis down'))}},
            '/api/stats': {'get': {'summary': 'Counts per state and queue',
                                   'operationId': 'stats',
                                   'responses': _answers(200, {'type': 'object'},
                                                         (401, 'authentication'),
                                                         (503, 'Redis down'))}},
            '/healthz': {'get': {'summary': 'Redis reachable? Persistence on? (details only '
                                            'for an authenticated caller)',
                                 'operationId': 'health', 'security': [{}],
                                 'responses': _answers(200, {'type': 'object'},
                                                       (503, 'Redis unreachable'))}},
        },
    }


def install(app, rt):
    doc = document(rt.config)

    @app.get('/api/openapi.json')
    def openapi():
        return json_response(200, doc)
