"""Dashboards for the customer (served by the hub's host) and the utility (mounted in
``meterhub utility serve``); docs/dashboards.md.

Transport layer: reads the parties' stores and the hub's card through the same clients
and verifiers as the CLI; never imported by lower layers.
"""
