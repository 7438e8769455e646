"""Browser-facing protections for every response and every state-changing request.

* Cross-site requests that change state are refused by their `Sec-Fetch-Site`
  and `Origin` headers. Browsers send these; programs (curl, API clients)
  send neither, so the JSON API keeps working for them.
* Dashboard forms must carry a valid CSRF token (csrf.py). An API request
  needs one only when it carries the dashboard's session cookie, i.e. when a
  browser sends it; programs authenticate by their Authorization header.
* Headers: a Content-Security-Policy that allows scripts from mailq only,
  nosniff, a strict Referrer-Policy, no framing, and no caching of pages.
"""
import bottle

from . import csrf

UNSAFE_METHODS = ('POST', 'PUT', 'PATCH', 'DELETE')
# Mail HTML is shown in an <iframe sandbox srcdoc>, which inherits this policy:
# it may use inline styles and inline images, but never scripts or remote images.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'same-origin',
    'X-Frame-Options': 'DENY',
    'Cache-Control': 'no-store',
}


def is_api(path=None):
    """API and health paths answer JSON; everything else is the dashboard's HTML."""
    path = bottle.request.path if path is None else path
    return path == '/api' or path.startswith('/api/') or path == '/healthz'


def apply_headers(response=None, keep=False):
    """Set the security headers; with keep, leave those a route set itself (downloads)."""
    response = response or bottle.response
    for name, value in HEADERS.items():
        if not (keep and name in response.headers):
            response.set_header(name, value)


def cross_site_reason(request=None):
    """Why a state-changing request looks cross-site, or None when it does not."""
    request = request or bottle.request
    if request.method not in UNSAFE_METHODS:
        return None
    site = request.get_header('Sec-Fetch-Site')
    if site and site not in ('same-origin', 'none'):
        return f'cross-site request refused (Sec-Fetch-Site: {site})'
    origin = request.get_header('Origin')
    if origin is not None:
        host = request.get_header('Host', '')
        if origin == 'null' or origin.split('://', 1)[-1].rstrip('/') != host:
            return 'cross-site request refused (Origin does not match Host)'
    return None


def session_id(request=None):
    return (request or bottle.request).get_cookie(csrf.COOKIE)


def ensure_session(request=None, response=None):
    """The browser's session id, setting the cookie on first visit."""
    request, response = request or bottle.request, response or bottle.response
    sid = session_id(request)
    if not sid or len(sid) > 100:
        sid = csrf.new_session_id()
        response.set_cookie(csrf.COOKIE, sid, path='/', httponly=True, samesite='lax',
                            secure=request.urlparts.scheme == 'https')
    return sid


def csrf_reason(secret, request=None):
    """Why this state-changing request fails the CSRF check, or None when it passes."""
    request = request or bottle.request
    if request.method not in UNSAFE_METHODS:
        return None
    sid = session_id(request)
    if is_api(request.path) and not sid:
        return None               # a program, authenticated by its header
    token = request.get_header(csrf.HEADER) or request.forms.get(csrf.FIELD)
    if not csrf.valid(secret, sid, token):
        return 'missing or invalid CSRF token; reload the page and try again'
    return None


def guard(secret):
    """The before_request check: (status, reason) to refuse with, or None."""
    reason = cross_site_reason()
    if reason is None:
        reason = csrf_reason(secret)
    return (403, reason) if reason else None


def unauthorized_page():
    """The 401 body for dashboard paths: no data, just why (the browser shows a login)."""
    return ('<!doctype html><html lang="en"><meta charset="utf-8"><title>mailq: log in</title>'
            '<h1>401 Authentication required</h1><p>Log in with the [web] username and '
            'password of this mailq.</p></html>')
