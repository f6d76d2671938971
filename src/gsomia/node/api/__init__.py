"""Where a request enters a node: the user API (``user``), the peer API (``peer``), the bodies
both read (``models``) and the alert stream (``streams``). Handlers ask the ``Node``; none
reads or writes the store itself."""

from gsomia.node.api.peer import create_peer_app
from gsomia.node.api.streams import Broker
from gsomia.node.api.user import create_user_app

__all__ = ["Broker", "create_peer_app", "create_user_app"]
