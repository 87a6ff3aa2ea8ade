"""dns-staleness-exporter: measures how long DNS serves records that Kubernetes already changed."""

__version__ = "0.1.0"
