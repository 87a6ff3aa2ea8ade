"""Prometheus rules for dns-staleness-exporter: `alerts/generate.py` renders `alerts/rules.yaml`."""
