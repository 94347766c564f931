"""Dual-condition generation and editing: the connector (this far), then the conditioner, the DiT and pipelines."""

from unilip.generation.connector import Connector

__all__ = ["Connector"]
