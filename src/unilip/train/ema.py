"""Exponential moving average of a model's trainable weights, kept by parameter name.

The official tokenizer evaluates and hands on to the next stage the EMA weights (decay 0.999 with the warm-up
``min(decay, (1 + n) / (10 + n))`` after n updates; the custom ``EMAModel`` of nnnth/UniLIP's
``tokenizer/scripts/train_stage*.py``). Keyed by name rather than by position, so the shadow weights save to
safetensors and load back into any model with the same names.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copies of ``model``'s trainable parameters; other tensors are taken from the model as they are."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.updates = 0
        self.shadow = {n: p.detach().clone().float() for n, p in model.named_parameters() if p.requires_grad}
        self._stored: dict[str, torch.Tensor] | None = None

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        params = dict(model.named_parameters())
        for name, shadow in self.shadow.items():
            shadow.lerp_(params[name].detach().float(), 1 - d)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, shadow in self.shadow.items():
            params[name].copy_(shadow.to(params[name].dtype))

    def store(self, model: nn.Module) -> None:
        """Remember the live weights (to evaluate with the EMA weights, then :meth:`restore`)."""
        params = dict(model.named_parameters())
        self._stored = {n: params[n].detach().clone() for n in self.shadow}

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, saved in (self._stored or {}).items():
            params[name].copy_(saved)
        self._stored = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.shadow, "__updates__": torch.tensor(self.updates)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        self.updates = int(state.pop("__updates__"))
        if set(state) != set(self.shadow):
            raise ValueError(f"EMA state does not match the model: missing {sorted(set(self.shadow) - set(state))[:5]}, "
                             f"unexpected {sorted(set(state) - set(self.shadow))[:5]}")
        self.shadow = {n: t.float().clone() for n, t in state.items()}
