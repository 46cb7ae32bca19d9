"""`python -m verify`: prove on a running cluster that tenant pods are sandboxed and fenced.

Run after `pulumi up` with the stack's kubeconfig; see `verify/__main__.py` for the options.
It talks to the API server with the Kubernetes Python client (`verify/client.py`).
"""
