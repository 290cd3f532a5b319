"""Memory savers, for GPUs smaller than the pipeline (the seeds' 24 GB RTX 4090 row): model CPU
offload, VAE tiling and slicing, and a dropped or int8 T5 encoder for SD3. Measured like any backend:
peak memory is the point, and their time and quality cost is what the user weighs against it."""

from __future__ import annotations

from typing import Any

from diffbench.backends.base import Backend, own, park, register
from diffbench.measure.quality import QualityFloor

_SD3_FAMILY = "sd3"


def _family_reason(name: str, spec: Any, family: str, what: str) -> str | None:
    if spec.family != family:
        return f"{name} applies to {what} only; {spec.name} is of the {spec.family} family"
    return None


@register
class ModelOffloadBackend(Backend):
    """diffusers' model CPU offload: each model moves to the GPU only while it runs."""

    name = "offload"
    summary = "enable_model_cpu_offload: each component on the GPU only while it runs (less memory, slower)"
    # Lossless: the same kernels run on the same weights, only their home between calls changes.
    quality_floor = QualityFloor(ssim=0.98, psnr=35.0)
    pairable = False  # it moves the cached pipeline's own modules: eager cannot run beside it

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self._device: str | None = None

    def unsupported_reason(self, case, spec, device: str) -> str | None:
        if not device.startswith("cuda"):
            return "model CPU offload moves components between the CPU and a GPU: it needs a CUDA device"
        return None

    def apply(self, pipe: Any) -> Any:
        # The components are shared with the cached pipeline: offload moves them all to the CPU
        # (which is what frees the GPU memory), and `restore` brings them back.
        self._device = str(pipe.device)
        pipe.enable_model_cpu_offload(device=self._device)
        return pipe

    def restore(self, pipe: Any) -> None:
        pipe.remove_all_hooks()
        if self._device is not None:
            pipe.to(self._device)


@register
class VaeTilingBackend(Backend):
    """Decode the latents tile by tile and image by image: bounds the VAE's activation memory."""

    name = "vae-tiling"
    summary = "VAE tiling and slicing: the decoder's memory no longer grows with image size and batch"
    # Tiles are blended at their seams, so the image changes slightly where tiling takes effect.
    quality_floor = QualityFloor(ssim=0.95, psnr=30.0)
    option_keys = frozenset({"tiling", "slicing"})
    default_options = {"tiling": True, "slicing": True}

    def apply(self, pipe: Any) -> Any:
        vae = own(pipe, "vae")  # the flags live on the module: keep them off the cached VAE
        if self.options["tiling"]:
            vae.enable_tiling()
        if self.options["slicing"]:
            vae.enable_slicing()
        return pipe


class _T5Backend(Backend):
    """Acts on SD3's T5 encoder; the cached encoder is parked on the CPU (base.park) while the case
    runs, so the GPU memory it held is really free, and the runner brings it back afterwards."""

    lossy = True

    def unsupported_reason(self, case, spec, device: str) -> str | None:
        return _family_reason(self.name, spec, _SD3_FAMILY, "Stable Diffusion 3 pipelines")


@register
class DropT5Backend(_T5Backend):
    """SD3 without its 4.7B-parameter T5 encoder: the prompt reaches the model through CLIP only."""

    name = "sd3-no-t5"
    summary = "SD3 without the T5-XXL text encoder (about 9 GiB less in fp16; prompt adherence drops)"
    # Not a numerical approximation but a different conditioning: only gross breakage is caught.
    quality_floor = QualityFloor(ssim=0.3, psnr=10.0)

    def apply(self, pipe: Any) -> Any:
        park(pipe, pipe.text_encoder_3)
        pipe.text_encoder_3 = None
        pipe.tokenizer_3 = None
        return pipe


@register
class QuantizedT5Backend(_T5Backend):
    """SD3 with its T5 encoder's linear layers in int8 (weight-only, torchao): about half its memory."""

    name = "sd3-t5-int8"
    summary = "SD3 with the T5-XXL encoder quantized to int8 weights (torchao)"
    requires = ("torchao",)
    install_hint = "pip install 'diffbench[torchao]'"
    quality_floor = QualityFloor(ssim=0.7, psnr=20.0)

    def apply(self, pipe: Any) -> Any:
        import copy

        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        original = pipe.text_encoder_3
        device = park(pipe, original) or original.device
        # Copied on the CPU and quantized layer by layer onto the device: the full-precision copy
        # never sits on the GPU.
        encoder = copy.deepcopy(original)
        quantize_(encoder, Int8WeightOnlyConfig(), device=device)
        pipe.text_encoder_3 = encoder.to(device)
        return pipe
