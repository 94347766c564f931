"""Where and in what precision the models run: ``--device`` and ``--dtype`` as every command and the web page read them.

A precision is a name (``fp32``, ``bf16``, ``fp16``): weights are converted once, at load, so no op pays for a
cast; the sampler's latent and its solver stay in float32 whatever the weights (see
:func:`unilip.generation.flow.sample_latents`).
"""

from __future__ import annotations

from unilip.errors import UniLIPError

DTYPES = ("fp32", "bf16", "fp16")


def resolve_device(name: str | None = None):
    """``cpu``, ``cuda``, ``cuda:1``, ``mps``...; None: CUDA when available, else the CPU. An accelerator that is
    not there is an error that says so, not a crash at the first tensor."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise UniLIPError(f"device: {name!r} is not a device (cpu, cuda, cuda:1, mps, ...): {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UniLIPError(f"device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UniLIPError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UniLIPError(f"device {name}: MPS is not available on this machine")
    return device


def resolve_dtype(name: str | None = None):
    """``fp32`` (default), ``bf16`` or ``fp16`` -> the torch dtype."""
    import torch

    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name is None:
        return torch.float32
    if name not in table:
        raise UniLIPError(f"dtype: {name!r} is not one of {', '.join(DTYPES)}")
    return table[name]


QUANTIZATIONS = ("int8",)


def quantize_weights(module, scheme: str = "int8"):
    """Weight-only quantization of ``module``'s linear layers in place (torchao ``Int8WeightOnlyConfig``: int8
    weights with a per-channel scale, activations in the module's dtype), for the components whose memory is
    mostly linear weights: the MLLM and the DiT. Needs the ``quant`` extra (``pip install "unilip[quant]"``)."""
    if scheme not in QUANTIZATIONS:
        raise UniLIPError(f"quantize: {scheme!r} is not one of {', '.join(QUANTIZATIONS)}")
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError:
        raise UniLIPError('8-bit weights need torchao: pip install "unilip[quant]"') from None
    quantize_(module, Int8WeightOnlyConfig())
    return module
