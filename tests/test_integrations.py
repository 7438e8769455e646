"""docs/integrations.md's snippets for other languages, each run as written by its real
runtime against a real `mailq submission` (or, for PHP's mail(), mailq-sendmail): Rails'
ActionMailer (Debian's ruby-actionmailer), Laravel's SMTP transport (Debian's Symfony
Mailer), Node's nodemailer (tests/clients, npm ci) and PHP's sendmail_path. Each mail
must become a record with the right envelope and subject. .ci/run installs them all."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailq.config import load
from mailq.runtime import Runtime
from support.procs import REPO_ROOT, free_port
from support.submission import SubmissionProcess, stored

DOCS = REPO_ROOT / 'docs' / 'integrations.md'
NODE_MODULES = REPO_ROOT / 'tests' / 'clients' / 'node_modules'
SENDMAIL = Path(sys.executable).parent / 'mailq-sendmail'
PASSWORD = 'sub-pw-0123'
SYMFONY_MAILER = '/usr/share/php/Symfony/Component/Mailer/autoload.php'


def snippet(heading, fence):
    """The code block of `fence` that follows the paragraph starting with `heading`."""
    (code,) = re.findall(rf'\n{re.escape(heading)}[^\n]*\n(?:[^\n]+\n)*\n```{fence}\n(.*?)```',
                         DOCS.read_text(), re.S)
    return code


@pytest.fixture
def listener(tmp_ini, redis_url):
    """A submission listener on loopback with AUTH (user `app`), and a Runtime on it."""
    port = free_port()
    ini = tmp_ini(redis={'url': redis_url},
                  submission={'enabled': 'yes', 'port': port, 'username': 'app',
                              'password': PASSWORD},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    proc = SubmissionProcess(ini, port)
    proc.rt = Runtime(load(str(ini), environ={}))
    yield proc
    proc.stop()


def with_port(code, port):
    assert '2525' in code
    return code.replace('2525', str(port))


def run(command, env=None, **kwargs):
    out = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         env={'PATH': '/usr/bin:/bin', **(env or {})}, **kwargs)
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out.stdout


def the_record(rt, redis_client, subject, source='smtp', user='app'):
    """The one record stored, checked against what the client sent."""
    [mail_id] = stored(redis_client)
    record = rt.store.get(mail_id)
    assert record.envelope == {'from': 'app@example.com', 'rcpts': ['ann@example.com']}
    assert record.fields['subject'] == subject and record.fields['status'] == 'queued'
    assert (record.fields['source'], record.fields.get('user', '')) == (source, user)
    return mail_id


RAILS = '''
require "action_mailer"
require "ostruct"
# What a Rails app's config.action_mailer.* becomes: ActionMailer::Base's settings.
config = OpenStruct.new(action_mailer: ActionMailer::Base)
%s
class OrderMailer < ActionMailer::Base
  def receipt
    mail(from: "app@example.com", to: "ann@example.com", subject: "Your receipt",
         body: "Thank you.")
  end
end
message = OrderMailer.receipt.deliver_now
puts message.message_id
'''


def test_rails_action_mailer(listener, redis_client):
    code = RAILS % with_port(snippet('Rails (', 'ruby'), listener.port)
    message_id = run(['ruby', '-e', code], env={'MAILQ_SMTP_PASSWORD': PASSWORD}).strip()
    mail_id = the_record(listener.rt, redis_client, 'Your receipt')
    assert listener.rt.store.get(mail_id).fields['message_id'] == f'<{message_id}>'


LARAVEL = '''<?php
require '%s';
use Symfony\\Component\\Mailer\\Transport\\Dsn;
use Symfony\\Component\\Mailer\\Transport\\Smtp\\EsmtpTransportFactory;
use Symfony\\Component\\Mime\\Email;
$env = parse_ini_string(file_get_contents('php://stdin'));
// Laravel's MailManager::createSmtpTransport, for MAIL_MAILER=smtp:
$transport = (new EsmtpTransportFactory())->create(new Dsn('smtp', $env['MAIL_HOST'],
    $env['MAIL_USERNAME'], $env['MAIL_PASSWORD'], (int) $env['MAIL_PORT']));
$sent = $transport->send((new Email())->from('app@example.com')->to('ann@example.com')
    ->subject('Laravel says hi')->text('Hello from Laravel.'));
echo $sent->getDebug();
'''


def test_laravel_env(listener, redis_client, tmp_path):
    env = with_port(snippet('Laravel (', 'ini'), listener.port)
    assert env.startswith('MAIL_MAILER=smtp\n')
    env = re.sub(r'(?m)^MAIL_PASSWORD=.*$', f'MAIL_PASSWORD={PASSWORD}', env)
    script = tmp_path / 'laravel.php'
    script.write_text(LARAVEL % SYMFONY_MAILER)
    debug = run(['php', str(script)], input=env)
    mail_id = the_record(listener.rt, redis_client, 'Laravel says hi')
    assert f'250 2.0.0 Ok: queued as {mail_id}' in debug


NODE = '''
const nodemailer = require("nodemailer");
%s
transport.sendMail({from: "app@example.com", to: "ann@example.com",
                    subject: "Node says hi", text: "Hello from Node."})
  .then((info) => console.log(info.response))
  .catch((err) => { console.error(err); process.exit(1); });
'''


def test_node_nodemailer(listener, redis_client):
    code = NODE % with_port(snippet('Node (', 'js'), listener.port)
    response = run(['node', '-e', code], env={'MAILQ_SMTP_PASSWORD': PASSWORD,
                                              'NODE_PATH': str(NODE_MODULES)})
    mail_id = the_record(listener.rt, redis_client, 'Node says hi')
    assert response.strip() == f'250 2.0.0 Ok: queued as {mail_id}'


PHP_MAIL = '''exit(mail("ann@example.com", "PHP says hi", "Hello from mail().",
                "From: app@example.com", "-fapp@example.com") ? 0 : 1);'''


def test_php_mail_through_sendmail_path(redis_ini, redis_client):
    (path,) = re.findall(r'^sendmail_path = "(\S+) (.*)"$', snippet("PHP's `mail()`", 'ini'),
                         re.M)
    assert path[0] == '/usr/local/bin/mailq-sendmail'
    run(['php', '-d', f'sendmail_path={SENDMAIL} {path[1]}', '-r', PHP_MAIL],
        env={'MAILQ_CONFIG': str(redis_ini)})
    rt = Runtime(load(str(redis_ini), environ={}))
    the_record(rt, redis_client, 'PHP says hi', source='sendmail', user='')
