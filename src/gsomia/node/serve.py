"""Run a node: the user API and the mutual-TLS peer API in one process, plus delivery."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
from pathlib import Path

import uvicorn

from gsomia.node.app import Broker, create_peer_app, create_user_app
from gsomia.node.clock import SimulatedClock, SystemClock
from gsomia.node.config import NodeConfig
from gsomia.node.delivery import Delivery
from gsomia.node.keysync import KeySync
from gsomia.node.sequencer import Sequencer
from gsomia.node.service import Node
from gsomia.node.witness import Witness
from gsomia.store.db import open_database


def peer_ca_bundle(config: NodeConfig) -> Path:
    """The peers' certificates, the only anchors the peer API trusts for client certificates."""
    bundle = config.path.parent / ".peer-ca.pem"
    bundle.write_bytes(b"".join(p.tls_cert.read_bytes() for p in config.peers.values()))
    return bundle


def build(config: NodeConfig) -> tuple[Node, Delivery, Broker]:
    engine = open_database(config.database_url)
    clock = SimulatedClock() if config.demo else SystemClock()
    node = Node(config, engine, clock)
    return node, Delivery(node), Broker()


WITNESS_INTERVAL = float(os.environ.get("GSOMIA_WITNESS_INTERVAL", "30"))


async def serve(config: NodeConfig) -> None:
    # Hand the GIL over more often (default 5 ms) so a flash report's thread is not
    # kept waiting behind a bulk thread's time slice (R17).
    sys.setswitchinterval(0.001)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    node, delivery, broker = build(config)
    await delivery.start()
    keys = KeySync(node, delivery.clients)
    witness = Witness(node, delivery.clients, WITNESS_INTERVAL, keys)
    delivery.witness = witness
    delivery.keys = keys
    user = uvicorn.Server(
        uvicorn.Config(
            create_user_app(node, delivery, broker),
            host=config.listen[0],
            port=config.listen[1],
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,  # open SSE streams would otherwise hold shutdown forever
        )
    )
    peer = uvicorn.Server(
        uvicorn.Config(
            create_peer_app(node, broker, witness, keys),
            host=config.peer_listen[0],
            port=config.peer_listen[1],
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(config.tls_cert),
            ssl_keyfile=str(config.tls_key),
            ssl_ca_certs=str(peer_ca_bundle(config)),
            ssl_cert_reqs=ssl.CERT_REQUIRED,
            timeout_graceful_shutdown=3,  # the partner's idle keep-alive TLS connections never answer close_notify
        )
    )
    sequencer = Sequencer(node)
    await sequencer.start()
    await witness.start()
    try:
        await asyncio.gather(user.serve(), peer.serve())
    finally:
        await witness.stop()
        await delivery.stop()
        await sequencer.stop()
        node.engine.dispose()
