"""Write a diffusers SDXL pipeline as one original-layout (sgm/LDM) SDXL safetensors checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

# Buffers that transformers rebuilds at construction (an arange); original checkpoints may carry them.
_SKIPPED_TEXT_ENCODER_KEYS = ("position_ids",)

_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPEN_CLIP_TOP_LEVEL = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER_PARTS = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_OPEN_CLIP_LAYER = re.compile(r"text_model\.encoder\.layers\.(\d+)\.(.+)")
_QKV = re.compile(r"self_attn\.([qkv])_proj\.(weight|bias)")


def save_sdxl_single_file(pipe, path: str | Path) -> Path:
    """Write `pipe`'s UNet, VAE and both text encoders to `path`, keyed as in sd_xl_base_1.0.safetensors."""
    checkpoint = sdxl_original_state_dict(pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2)
    path = Path(path)
    save_file({key: tensor.detach().contiguous() for key, tensor in checkpoint.items()}, str(path))
    return path


def sdxl_original_state_dict(unet, vae, text_encoder, text_encoder_2) -> dict:
    """The four SDXL models' tensors under their original (sgm) names; works on meta tensors too."""
    checkpoint = {}
    checkpoint.update(_prefixed(UNET_PREFIX, unet_to_ldm(unet.state_dict(), unet.config)))
    checkpoint.update(_prefixed(VAE_PREFIX, vae_to_ldm(vae.state_dict(), vae.config)))
    checkpoint.update(_prefixed(CLIP_L_PREFIX, clip_to_ldm(text_encoder.state_dict())))
    checkpoint.update(_prefixed(OPEN_CLIP_PREFIX, clip_with_projection_to_open_clip(text_encoder_2.state_dict())))
    return checkpoint


def _prefixed(prefix: str, state_dict: dict) -> dict:
    return {prefix + key: tensor for key, tensor in state_dict.items()}


def _split_parameter(key: str) -> tuple[str, str]:
    """'a.b.weight' -> ('a.b', 'weight')."""
    module, _, parameter = key.rpartition(".")
    return module, parameter


def unet_to_ldm(state_dict: dict, config) -> dict:
    """Rename a diffusers UNet2DConditionModel state dict to the original `model.diffusion_model` names."""
    layers_per_block = config["layers_per_block"]
    if not isinstance(layers_per_block, int):
        raise ValueError(f"original UNet layout needs one int layers_per_block, got {layers_per_block!r}")
    up_blocks_with_attention = {
        int(key.split(".")[1]) for key in state_dict if re.match(r"up_blocks\.\d+\.attentions\.", key)
    }
    return {
        unet_key_to_ldm(key, layers_per_block, up_blocks_with_attention): tensor for key, tensor in state_dict.items()
    }


def unet_key_to_ldm(key: str, layers_per_block: int, up_blocks_with_attention: set[int]) -> str:
    """One UNet key: down/up blocks of `layers_per_block` (+1 for up) layers become flat input/output blocks."""
    module, parameter = _split_parameter(key)
    if module in _UNET_TOP_LEVEL:
        return f"{_UNET_TOP_LEVEL[module]}.{parameter}"
    parts = key.split(".")
    stride = layers_per_block + 1  # each down block also owns its downsampler slot; up blocks have one more layer
    if parts[0] == "down_blocks":
        block, kind, layer, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        first = 1 + block * stride
        if kind == "downsamplers":
            return ".".join([f"input_blocks.{first + layers_per_block}.0.op", *rest[1:]])
        slot = 0 if kind == "resnets" else 1
        return _unet_layer_key(f"input_blocks.{first + layer}.{slot}", kind, rest, key)
    if parts[0] == "mid_block":
        kind, layer, rest = parts[1], int(parts[2]), parts[3:]
        index = 2 * layer if kind == "resnets" else 2 * layer + 1
        return _unet_layer_key(f"middle_block.{index}", kind, rest, key)
    if parts[0] == "up_blocks":
        block, kind, layer, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        first = block * stride
        if kind == "upsamplers":
            slot = 2 if block in up_blocks_with_attention else 1
            return ".".join([f"output_blocks.{first + layers_per_block}.{slot}", *rest])
        slot = 0 if kind == "resnets" else 1
        return _unet_layer_key(f"output_blocks.{first + layer}.{slot}", kind, rest, key)
    raise ValueError(f"no original SDXL name for UNet key {key!r}")


def _unet_layer_key(ldm_module: str, kind: str, rest: list[str], key: str) -> str:
    if kind == "resnets":
        return ".".join([ldm_module, _UNET_RESNET_PARTS.get(rest[0], rest[0]), *rest[1:]])
    if kind == "attentions":
        return ".".join([ldm_module, *rest])  # transformer internals keep their names
    raise ValueError(f"no original SDXL name for UNet key {key!r}")


def vae_to_ldm(state_dict: dict, config) -> dict:
    """Rename an AutoencoderKL state dict to the original `first_stage_model` names and conv shapes."""
    num_up_blocks = len(config["up_block_types"])
    converted = {}
    for key, tensor in state_dict.items():
        ldm_key = vae_key_to_ldm(key, num_up_blocks)
        if ".mid.attn_1." in ldm_key and ldm_key.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # the original attention projections are 1x1 convolutions
        converted[ldm_key] = tensor
    return converted


def vae_key_to_ldm(key: str, num_up_blocks: int) -> str:
    """One VAE key; decoder up blocks are numbered from the bottom in the original layout."""
    key = re.sub(r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out.", key)
    key = re.sub(r"\.resnets\.(\d+)\.conv_shortcut\.", r".resnets.\1.nin_shortcut.", key)
    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    key = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda match: f".mid.block_{int(match[1]) + 1}.", key)
    match = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.(.+)", key)
    if match:
        block = num_up_blocks - 1 - int(match[1])
        kind = "block" if match[2] == "resnets" else "upsample"
        key = f"decoder.up.{block}.{kind}.{match[3]}"
    match = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)$", key)
    if match:
        key = f"{match[1]}.mid.attn_1.{_VAE_ATTENTION_PARTS[match[2]]}.{match[3]}"
    return key


def clip_to_ldm(state_dict: dict) -> dict:
    """CLIP-L keeps transformers' names under `text_model.` (transformers >= 5.6 dropped that wrapper)."""
    return {
        (key if key.startswith("text_model.") else f"text_model.{key}"): tensor
        for key, tensor in state_dict.items()
        if not key.endswith(_SKIPPED_TEXT_ENCODER_KEYS)
    }


def clip_with_projection_to_open_clip(state_dict: dict) -> dict:
    """CLIPTextModelWithProjection -> OpenCLIP names: fused q/k/v `in_proj`, `text_projection` as x @ P."""
    converted, qkv = {}, {}
    for key, tensor in state_dict.items():
        if key.endswith(_SKIPPED_TEXT_ENCODER_KEYS):
            continue
        if key == "text_projection.weight":
            converted["text_projection"] = tensor.T
        elif key in _OPEN_CLIP_TOP_LEVEL:
            converted[_OPEN_CLIP_TOP_LEVEL[key]] = tensor
        else:
            _convert_open_clip_layer_key(key, tensor, converted, qkv)
    for (layer, parameter), parts in qkv.items():
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        converted[f"transformer.resblocks.{layer}.attn.in_proj_{parameter}"] = fused
    return converted


def _convert_open_clip_layer_key(key: str, tensor: torch.Tensor, converted: dict, qkv: dict) -> None:
    match = _OPEN_CLIP_LAYER.fullmatch(key)
    if not match:
        raise ValueError(f"no OpenCLIP name for text_encoder_2 key {key!r}")
    layer, rest = match[1], match[2]
    projection = _QKV.fullmatch(rest)
    if projection:
        qkv.setdefault((layer, projection[2]), {})[projection[1]] = tensor
        return
    module, parameter = _split_parameter(rest)
    if module not in _OPEN_CLIP_LAYER_PARTS:
        raise ValueError(f"no OpenCLIP name for text_encoder_2 key {key!r}")
    converted[f"transformer.resblocks.{layer}.{_OPEN_CLIP_LAYER_PARTS[module]}.{parameter}"] = tensor
