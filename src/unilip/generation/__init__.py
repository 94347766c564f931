"""Dual-condition generation and editing: the conditioner and the connector (this far); the DiT and pipelines next."""

from unilip.generation.conditioner import Conditioner
from unilip.generation.connector import Connector

__all__ = ["Conditioner", "Connector"]
