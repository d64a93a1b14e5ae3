"""convlog as a service: replicas answer the MessageStore over NATS, partition by partition.

:mod:`~projections.service.protocol` is the wire protocol any language can speak,
:mod:`~projections.service.replica` what ``convlog serve`` runs, and
:mod:`~projections.service.remote` the MessageStore that uses it.
"""
