"""Write mailq ini files for tests."""
import configparser


def write_ini(path, sections):
    """Write {section: {key: value}} to path and return path."""
    cp = configparser.ConfigParser(interpolation=None)
    for name, values in sections.items():
        cp[name] = {k: str(v) for k, v in values.items()}
    with open(path, 'w') as fh:
        cp.write(fh)
    return path


def smtp_section(server, **extra):
    """[smtp] for a plain test SMTP server."""
    return {'transport': 'smtp', 'host': '127.0.0.1', 'port': str(server.port),
            'timeout': '5', 'from': 'mailq@example.com', **extra}


# A cron job with the shipped daily_report template, as the dashboard tests know it.
REPORT_JOB = {'cron:report': {'schedule': '0 8 * * *', 'template': 'daily_report',
                              'to': 'ops@example.com', 'context': '{"team": "ops"}'}}
