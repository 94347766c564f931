"""``python -m unilip.cli``: what torchrun and ``accelerate launch -m`` start."""

from unilip.cli import entry

entry()
