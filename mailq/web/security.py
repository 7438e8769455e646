"""Browser-facing protections for every response and every state-changing request.

* The Host header must name this server ([web] allowed_hosts, the loopback
  names and [web] host): a DNS-rebinding page reaches 127.0.0.1 under its own
  name, so its requests carry that name, and are refused before anything else.
* Cross-site requests that change state are refused by their `Sec-Fetch-Site`
  and `Origin` headers. Browsers send these; programs (curl, API clients)
  send neither, so the JSON API keeps working for them.
* Dashboard forms must carry a valid CSRF token (csrf.py). An API request
  needs one only when it carries the dashboard's session cookie, i.e. when a
  browser sends it; programs authenticate by their Authorization header.
* Headers: a Content-Security-Policy that allows scripts from mailq only,
  nosniff, a strict Referrer-Policy, no framing, and no caching of pages.
"""
from urllib.parse import quote, urlsplit

import bottle

from . import csrf

UNSAFE_METHODS = ('POST', 'PUT', 'PATCH', 'DELETE')
LOOPBACK_NAMES = ('localhost', '127.0.0.1', '::1')
WILDCARD_BINDS = ('', '0.0.0.0', '::')
DEFAULT_PORTS = {'http': 80, 'https': 443}
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
    headers = (response or bottle.response).headers    # a new view on each access
    for name, value in HEADERS.items():
        if not (keep and name in headers):
            headers[name] = value


def allowed_hosts(web, listen_host=None):
    """The names a Host header may carry: the loopback names, where mailq listens
    (unless that is every address) and [web] allowed_hosts."""
    names = set(LOOPBACK_NAMES) | set(web.allowed_hosts)
    for host in (web.host, listen_host):
        if host is not None and host not in WILDCARD_BINDS:
            names.add(host.lower().strip('[]'))
    return frozenset(names)


def split_host(header):
    """(name, port) of a Host header: 'a.example:80' -> ('a.example', 80), '[::1]' ->
    ('::1', None); None when it is not a host[:port] at all."""
    header = header.strip().lower()
    if header.startswith('['):
        name, sep, rest = header[1:].partition(']')
        if not sep or (rest and not rest.startswith(':')):
            return None
        port = rest[1:]
    elif header.count(':') > 1:
        name, port = header, ''         # a bare IPv6 address
    else:
        name, _, port = header.partition(':')
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5):
        return None
    return name.rstrip('.'), int(port) if port else None


def host_allowed(header, allowed):
    """True when the Host header names one of `allowed` ('.example.org' also matches
    its subdomains; '*' matches anything). A request without Host is no browser's."""
    if header is None or '*' in allowed:
        return True
    parts = split_host(header)
    if parts is None:
        return False
    name = parts[0]
    return name in allowed or any(entry.startswith('.') and (
        name == entry[1:] or name.endswith(entry)) for entry in allowed)


def host_reason(allowed, request=None):
    """Why this request's Host is refused, or None."""
    header = (request or bottle.request).get_header('Host')
    if host_allowed(header, allowed):
        return None
    return (f'Host {header[:100]!r} is not allowed here; list it in [web] allowed_hosts '
            '(this refuses DNS rebinding)')


def _origin(scheme, host_header):
    """(scheme, name, port) of this server as the client addressed it."""
    parts = split_host(host_header or '')
    if parts is None:
        return None
    return scheme, parts[0], parts[1] or DEFAULT_PORTS.get(scheme)


def same_origin(origin, scheme, host_header):
    """True when the Origin header names this server: same scheme, host and port."""
    try:
        parts = urlsplit(origin)
        theirs = (parts.scheme, (parts.hostname or '').rstrip('.'),
                  parts.port or DEFAULT_PORTS.get(parts.scheme))
    except ValueError:          # a port out of range
        return False
    ours = _origin(scheme, host_header)
    return ours is not None and theirs == ours and parts.path in ('', '/')


def cross_site_reason(request=None):
    """Why a state-changing request looks cross-site, or None when it does not."""
    request = request or bottle.request
    if request.method not in UNSAFE_METHODS:
        return None
    site = request.get_header('Sec-Fetch-Site')
    if site and site not in ('same-origin', 'none'):
        return f'cross-site request refused (Sec-Fetch-Site: {site})'
    origin = request.get_header('Origin')
    if origin is not None and not same_origin(origin, request.urlparts.scheme,
                                               request.get_header('Host')):
        return 'cross-site request refused (Origin does not match this server)'
    return None


def session_id(request=None):
    request = request or bottle.request
    if 'HTTP_COOKIE' not in request.environ:    # a program: no cookie jar to parse
        return None
    return request.get_cookie(csrf.COOKIE)


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


def unauthorized_page(message='authentication required'):
    """The 401 body for dashboard paths: no data, just why (the browser shows a login)."""
    return ('<!doctype html><html lang="en"><meta charset="utf-8"><title>mailq: log in</title>'
            f'<h1>401 {message.capitalize()}</h1><p>Log in with the [web] username and '
            'password of this mailq.</p></html>')


def download(data, filename, content_type):
    """Serve mail content as a download, never rendered in the dashboard's origin:
    attachment, nosniff, and a CSP sandbox in case a browser renders it anyway."""
    safe = ''.join(c for c in filename if c.isalnum() or c in '._- ')[:100] or 'download'
    apply_headers()
    bottle.response.content_type = content_type
    bottle.response.set_header('Content-Disposition',
                               f"attachment; filename=\"{safe}\"; filename*=UTF-8''"
                               f"{quote(filename[:200])}")
    bottle.response.set_header('Content-Security-Policy', "sandbox; default-src 'none'")
    return data
