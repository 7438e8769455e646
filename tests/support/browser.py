"""Headless Chromium from Debian (/usr/bin/chromium), driven by Playwright.

Playwright never downloads a browser here: it launches the system one.
"""
import contextlib
import shutil

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']


@contextlib.contextmanager
def chromium():
    """A launched browser for the duration of the block."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, base_url, username, password):
    """A fresh context (own cookies and storage) logged in with HTTP Basic."""
    context = browser.new_context(base_url=base_url, viewport={'width': 1280, 'height': 900},
                                  http_credentials={'username': username,
                                                    'password': password})
    page = context.new_page()
    page.console_errors = []
    page.dialogs = []
    page.on('console', lambda msg: msg.type == 'error' and page.console_errors.append(msg.text))

    def accept(dialog):
        page.dialogs.append(dialog.message)
        dialog.accept()
    page.on('dialog', accept)
    return page


def screenshot(page, artifacts, name):
    """Save the whole page as tests/artifacts/dashboard-<name>.png for people to look at."""
    path = artifacts / f'dashboard-{name}.png'
    page.screenshot(path=str(path), full_page=True)
    return path
