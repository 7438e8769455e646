"""GET /metrics: the cluster's metrics in Prometheus text format.

Behind the same authentication as every other route (Prometheus sends it with
`basic_auth` or `authorization` in its scrape config).
"""
import bottle
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..metrics import ClusterCollector


def install(app, rt):
    registry = CollectorRegistry(auto_describe=False)   # nothing read until a scrape
    registry.register(ClusterCollector(rt))

    @app.get('/metrics')
    def metrics():
        return bottle.HTTPResponse(generate_latest(registry), status=200,
                                   headers={'Content-Type': CONTENT_TYPE_LATEST,
                                            'Cache-Control': 'no-store'})
