"""Latent spaces other than UniLIP's for the generator: the paper's "VAE latent" baseline, and SANA's own DC-AE.

``PixelAutoencoder``: a plain DC-AE autoencoder (diffusers ``AutoencoderDC``, encoder and decoder trained together on
pixels) whose latent has the UniLIP latent's shape, so the generator can target either. ``load_autoencoder`` also
wraps a pretrained diffusers ``AutoencoderDC`` (SANA's ``dc-ae-f32c32``), the latent official generation stage 1
aligns the connector in, with the pretrained SANA DiT frozen.

The paper's ablation (UniLIP latent 0.56 vs a VAE latent 0.48 on GenEval) asks whether a latent that *understands*
is easier to generate in than one that only reconstructs. ``unilip reproduce generator`` trains this autoencoder on
the same mini-world images with the shared loop (``unilip.train.autoencoder``), then the generator in its latent with the same budget.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn



class PixelAutoencoder(nn.Module):
    """``encode`` images in [0, 1] -> latents (C, h, w); ``decode`` back. The interface the generator uses."""

    def __init__(self, image_size: int, latent_channels: int, latent_size: int, widths: tuple[int, ...] = (16, 32, 64, 64, 128)):
        from diffusers import AutoencoderDC

        super().__init__()
        stages = len(widths)
        if image_size // 2 ** (stages - 1) != latent_size:
            raise ValueError(f"{stages} stages take {image_size} px to {image_size // 2 ** (stages - 1)}, not {latent_size}")
        kinds = tuple("ResBlock" if i < stages - 2 else "EfficientViTBlock" for i in range(stages))
        scales = tuple(() if k == "ResBlock" else (5,) for k in kinds)
        self.image_size, self.latent_channels = image_size, latent_channels
        self.args = {"image_size": image_size, "latent_channels": latent_channels, "latent_size": latent_size, "widths": list(widths)}
        self.ae = AutoencoderDC(latent_channels=latent_channels, attention_head_dim=16, encoder_block_types=kinds,
                                decoder_block_types=kinds, encoder_block_out_channels=widths, decoder_block_out_channels=widths,
                                encoder_layers_per_block=(1,) * stages, decoder_layers_per_block=(1,) * stages,
                                encoder_qkv_multiscales=scales, decoder_qkv_multiscales=scales)

    def encode(self, images: Tensor) -> Tensor:
        return self.ae.encode(images * 2 - 1).latent

    def decode(self, latents: Tensor, clamp: bool = False) -> Tensor:
        out = (self.ae.decode(latents).sample + 1) / 2
        return out.clamp(0, 1) if clamp else out

    def forward(self, images: Tensor) -> Tensor:
        return self.decode(self.encode(images))

    def save_pretrained(self, directory: str | Path) -> None:
        from unilip.hub import component_header, save_weights_and_config

        save_weights_and_config(directory, self.state_dict(), {**component_header("PixelAutoencoder"), **self.args})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> PixelAutoencoder:
        import json

        from safetensors.torch import load_file

        from unilip.errors import UniLIPError
        from unilip.hub import check_component_config, load_state_dict_strict

        directory = Path(directory)
        try:
            args = json.loads((directory / "config.json").read_text())
            check_component_config(args, "PixelAutoencoder", directory / "config.json",
                                   legacy={"_class_name": "PixelAutoencoder", "format_version": None})
            args = {k: v for k, v in args.items() if k not in ("_class_name", "_unilip_version", "format_version")}
            model = cls(**{**args, "widths": tuple(args["widths"])})
            state = load_file(str(directory / "model.safetensors"))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UniLIPError(f"cannot load a PixelAutoencoder from {directory}: {err}") from err
        load_state_dict_strict(model, state, f"the autoencoder weights in {directory}")
        return model


class DiffusersAutoencoder(nn.Module):
    """A pretrained diffusers ``AutoencoderDC`` behind the same ``encode`` / ``decode`` interface (pixels in [0, 1];
    the scaling factor is the generator's ``latent_scale``, as in the official stage 1)."""

    def __init__(self, ae):
        super().__init__()
        self.ae = ae

    def encode(self, images: Tensor) -> Tensor:
        return self.ae.encode(images * 2 - 1).latent

    def decode(self, latents: Tensor, clamp: bool = False) -> Tensor:
        out = (self.ae.decode(latents).sample + 1) / 2
        return out.clamp(0, 1) if clamp else out


def load_autoencoder(spec: str) -> nn.Module:
    """A :class:`PixelAutoencoder` directory, or a diffusers ``AutoencoderDC`` (a directory or hub id, at its root or
    in ``vae/``, as SANA ships it), for the generator's ``autoencoder`` setting."""
    import json

    from unilip.errors import UniLIPError
    from unilip.hub import resolve_pretrained

    local = Path(spec)
    if (local / "config.json").is_file() and json.loads((local / "config.json").read_text()).get("_class_name") == "PixelAutoencoder":
        return PixelAutoencoder.from_pretrained(local)
    from diffusers import AutoencoderDC

    path = resolve_pretrained(spec, f"the autoencoder {spec}", ["config.json", "*.safetensors", "vae/*"])
    sub = "vae" if (Path(path) / "vae" / "config.json").is_file() else None
    try:
        return DiffusersAutoencoder(AutoencoderDC.from_pretrained(path, subfolder=sub))
    except (OSError, ValueError) as err:
        raise UniLIPError(f"cannot load an AutoencoderDC from {path}: {err}") from err
