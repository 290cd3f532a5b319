"""Load a pipeline from one original-format (LDM/sgm) checkpoint file, fully offline."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers.loaders.single_file_utils import (
    SingleFileComponentError,
    convert_open_clip_checkpoint,
    load_single_file_checkpoint,
)
from safetensors import SafetensorError, safe_open
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from diffbench.errors import OptionError

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt")
SINGLE_FILE_SUFFIXES = (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES)
# torch.save writes a zip archive; the legacy format is a bare pickle, whose first byte is PROTO.
_PICKLE_MAGICS = (b"PK\x03\x04", b"\x80")
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."


def is_single_file(path: str | Path) -> bool:
    """True for a checkpoint file name (.safetensors/.ckpt/.bin/.pt), False for a folder."""
    path = Path(path)
    return path.suffix.lower() in SINGLE_FILE_SUFFIXES and not path.is_dir()


def load_single_file(pipeline_cls, checkpoint_path, config_folder, torch_dtype: torch.dtype | None):
    """Build `pipeline_cls` from one checkpoint file, with every config and tokenizer from `config_folder`.

    Nothing is downloaded: `config_folder` must be a local diffusers-layout folder (model_index.json,
    one subfolder per component with its config; tokenizer files for the tokenizers).
    """
    checkpoint_path = Path(checkpoint_path)
    config_folder = Path(config_folder)
    check_checkpoint_file(checkpoint_path)
    check_config_folder(config_folder)
    logger.info("loading %s from %s (configs from %s)", pipeline_cls.__name__, checkpoint_path, config_folder)
    components = {}
    if _text_encoders_are_ambiguous(pipeline_cls, config_folder):
        components["text_encoder_2"] = load_sdxl_open_clip(checkpoint_path, config_folder, torch_dtype)
    try:
        return pipeline_cls.from_single_file(
            str(checkpoint_path),
            config=str(config_folder),
            local_files_only=True,
            torch_dtype=torch_dtype,
            **components,
        )
    except SingleFileComponentError as error:
        raise OptionError(f"checkpoint {checkpoint_path} cannot make a {pipeline_cls.__name__}: {error}") from error


def check_checkpoint_file(path: Path) -> None:
    """Raise OptionError, naming `path`, unless it is a readable safetensors or torch checkpoint file."""
    if not path.exists():
        raise OptionError(f"checkpoint file {path} does not exist")
    if path.is_dir():
        raise OptionError(
            f"checkpoint {path} is a folder, not a single file; load a diffusers folder with from_pretrained"
        )
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise OptionError(
            f"checkpoint file {path} is not a single-file checkpoint: its name must end with one of "
            f"{', '.join(SINGLE_FILE_SUFFIXES)}"
        )
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        _check_safetensors_header(path)
    else:
        _check_pickle_magic(path)


def check_config_folder(folder: Path) -> None:
    """Raise OptionError unless `folder` is a local diffusers config folder.

    diffusers reads any `config` that is not a folder as a Hub repo id, and when that repo is not
    cached it retries with `local_files_only=False`, i.e. it downloads: never let it get there.
    """
    if not (folder / "model_index.json").is_file():
        raise OptionError(
            f"config folder {folder} is not a local diffusers pipeline folder (no model_index.json); "
            "single-file loading needs one for the component configs and tokenizers"
        )


def _check_safetensors_header(path: Path) -> None:
    try:
        with safe_open(str(path), framework="pt") as checkpoint:
            has_tensors = bool(list(checkpoint.keys()))
    except (SafetensorError, OSError) as error:
        raise OptionError(f"checkpoint file {path} is not a valid safetensors file: {error}") from error
    if not has_tensors:
        raise OptionError(f"checkpoint file {path} holds no tensors")


def _check_pickle_magic(path: Path) -> None:
    with path.open("rb") as file:
        head = file.read(4)
    if not head.startswith(_PICKLE_MAGICS):
        raise OptionError(f"checkpoint file {path} is not a torch checkpoint (neither a zip archive nor a pickle)")


def _text_encoders_are_ambiguous(pipeline_cls, config_folder: Path) -> bool:
    """True when diffusers would load SDXL's CLIP-L weights into text_encoder_2 too.

    diffusers (create_diffusers_clip_model_from_ldm) gives a CLIP model the CLIP-L weights whenever the
    checkpoint's CLIP-L width equals the model's; it only reaches the OpenCLIP branch when the widths
    differ. Real SDXL (768 vs 1280) is fine; tiny configs with one width for both encoders are not.
    """
    if "text_encoder_2" not in inspect.signature(pipeline_cls.__init__).parameters:
        return False
    folders = [config_folder / name for name in ("text_encoder", "text_encoder_2")]
    if not all((folder / "config.json").is_file() for folder in folders):
        return False
    return len({CLIPTextConfig.from_pretrained(folder).hidden_size for folder in folders}) == 1


def load_sdxl_open_clip(
    checkpoint_path: Path, config_folder: Path, torch_dtype: torch.dtype | None
) -> CLIPTextModelWithProjection:
    """text_encoder_2 from the checkpoint's OpenCLIP weights, converted by diffusers' own OpenCLIP mapping."""
    logger.info("text encoders share one width: loading text_encoder_2 from %s's OpenCLIP weights", checkpoint_path)
    checkpoint = load_single_file_checkpoint(str(checkpoint_path), local_files_only=True)
    if not any(key.startswith(SDXL_OPEN_CLIP_PREFIX) for key in checkpoint):
        raise OptionError(
            f"checkpoint {checkpoint_path} cannot make text_encoder_2: its OpenCLIP weights "
            f"({SDXL_OPEN_CLIP_PREFIX}*) appear to be missing"
        )
    with init_empty_weights():  # parameters on meta (buffers stay real): the checkpoint's tensors replace them
        model = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(config_folder / "text_encoder_2"))
    state_dict = convert_open_clip_checkpoint(model, checkpoint, prefix=SDXL_OPEN_CLIP_PREFIX)
    model.load_state_dict(state_dict, strict=True, assign=True)
    if torch_dtype is not None:
        model.to(torch_dtype)
    return model.eval()
