"""The web role: JSON API, dashboard, /healthz and /metrics on one Bottle app."""
