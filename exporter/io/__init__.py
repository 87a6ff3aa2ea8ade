"""The adapters at the edges: DNS sockets, the Kubernetes watch, HTTP, metrics and the lab."""
