"""Load a pipeline from one original-format (LDM/sgm) checkpoint file, fully offline."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers.loaders.single_file_utils import SingleFileComponentError
from safetensors import SafetensorError, safe_open

from diffbench.errors import OptionError

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt")
SINGLE_FILE_SUFFIXES = (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES)
# torch.save writes a zip archive; the legacy format is a bare pickle, whose first byte is PROTO.
_PICKLE_MAGICS = (b"PK\x03\x04", b"\x80")


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
    try:
        return pipeline_cls.from_single_file(
            str(checkpoint_path),
            config=str(config_folder),
            local_files_only=True,
            torch_dtype=torch_dtype,
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
