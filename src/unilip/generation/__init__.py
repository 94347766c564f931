"""Dual-condition generation and editing, the model half: the conditioner (MLLM hidden states + learnable queries,
``conditioner.py``), the connector (``connector.py``), the SANA DiT (``dit.py``), flow matching, the CFG step and the
sampler (``flow.py``), and ``UniLIPGenerator`` tying them to the tokenizer's latent (``model.py``). Sampling end to end,
prompt to pixels, is :class:`unilip.pipeline.UniLIPPipeline`."""

from unilip.generation.conditioner import Conditioner
from unilip.generation.connector import Connector

__all__ = ["Conditioner", "Connector"]
