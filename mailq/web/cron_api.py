"""Cron jobs over HTTP: GET /api/cron, GET /api/cron/<name>, POST /api/cron/<name>/run|pause|resume.

Thin like api.py: every route calls mailq.cron.jobs, the functions behind the
CLI and the dashboard. The dicts they return are documented there.
"""
from ..cron import jobs
from ..cron.validate import check_runtime
from .api import api_route
from .responses import error_response, json_response


def install(app, rt):
    check_runtime(rt)       # a bad job stops the web start too; imports the job's modules

    @app.get('/api/cron')
    @api_route
    def list_jobs():
        return json_response(200, {'jobs': jobs.list_jobs(rt)})

    @app.get('/api/cron/<name>')
    @api_route
    def get_job(name):
        return json_response(200, jobs.get_job(rt, name))

    @app.post('/api/cron/<name>/run')
    @api_route
    def run_now(name):
        run = jobs.run_now(rt, name)
        if run['outcome'] != 'ok':
            return error_response(422, f'cron job {name} failed: {run["error"]}', {'run': run})
        return json_response(202, run)

    @app.post('/api/cron/<name>/<action:re:pause|resume>')
    @api_route
    def pause_or_resume(name, action):
        return json_response(200, getattr(jobs, action)(rt, name))
