"""The node's use cases, each one database transaction, each decided by the core.

Routes (``node.api``) and workers (``node.workers.delivery``) call ``Node``; nothing here knows
HTTP. Every write that matters commits together with its outbox row and its ledger
entry, so a crash at any instant leaves either all of it or none of it.

One module per thing a user does: ``agreements`` (agreements, notes, key chains),
``users``, ``provide``, ``receive``, ``read``, ``alerts``, ``casework`` (records, the
register, cases), ``outbox`` (delivery's claims), ``partner`` (tree heads, alarms),
``integrity`` (stored rows checked against the ledger), ``ledger`` (this node's entries);
``node`` wires them.
"""

from gsomia.core.records import effective_label
from gsomia.node.service.agreements import NOTES_REFRESH, Applied
from gsomia.node.service.alerts import FreshAlert
from gsomia.node.service.node import Node
from gsomia.node.service.outbox import LANES, LEASE
from gsomia.node.service.provide import ItemSpec
from gsomia.node.service.users import token_hash
from gsomia.store.outbox import OutboxRow, RowKey

__all__ = [
    "LANES",
    "LEASE",
    "NOTES_REFRESH",
    "Applied",
    "FreshAlert",
    "ItemSpec",
    "Node",
    "OutboxRow",
    "RowKey",
    "effective_label",
    "token_hash",
]
