"""A national node: user API, peer API, delivery workers and flash alerts.

The node is the imperative shell around the pure core: it reads the clock, the
database and the network, and asks ``policy.decide``, ``envelope`` and the
lifecycle engine for every decision.
"""
