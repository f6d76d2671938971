"""What the use cases take from the audit tools: the entries' kinds, how a row is compared
with its ledger entry, and the signed tree head. The one place this package imports them."""

from gsomia.node.audit import NOTE_KINDS, USER_KINDS, current_head, note_differs, store_head, user_differs

__all__ = ["NOTE_KINDS", "USER_KINDS", "current_head", "note_differs", "store_head", "user_differs"]
