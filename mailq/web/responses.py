"""JSON answers of the API. Imports nothing of mailq, so every route module and
app.py can use it without importing each other."""
import json

import bottle


def json_response(status, body, headers=None):
    response = bottle.HTTPResponse(status=status, body=json.dumps(body, default=str))
    response.content_type = 'application/json'
    for name, value in (headers or {}).items():
        response.set_header(name, value)
    return response


def error_response(status, message, details=None, headers=None):
    """The one error shape: {"error": message, "details": {...}}."""
    return json_response(status, {'error': message, 'details': details or {}}, headers)


def error_of(exc):
    """The answer to a MailqError: its own status, message and details."""
    return error_response(exc.http_status, str(exc), exc.details())
