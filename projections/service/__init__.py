"""convlog as a service: replicas answer the MessageStore over NATS, partition by partition.

:mod:`~projections.service.protocol` is the wire protocol any language can speak,
:mod:`~projections.service.replica` what ``convlog serve`` runs, and
:mod:`~projections.service.remote` the MessageStore that uses it.
"""

from projections.service.protocol import ServiceSubjects
from projections.service.remote import RemoteMessageStore
from projections.service.replica import Replica

__all__ = ["RemoteMessageStore", "Replica", "ServiceSubjects"]
