"""Grafana dashboards: `dashboards/generate.py` renders the committed `dashboards/*.json`."""
