"""The backend interface: a named way to accelerate a pipeline, registered by a decorator."""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.metadata
import logging
import pkgutil
from typing import TYPE_CHECKING, Any, ClassVar

from diffbench.errors import OptionError
from diffbench.measure.quality import QualityFloor

if TYPE_CHECKING:
    from diffbench.case import Case
    from diffbench.models.catalog import ModelSpec

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, type["Backend"]] = {}
ENTRY_POINT_GROUP = "diffbench.backends"


class Backend:
    """Subclass, set `name`, override what differs, and decorate with `@register`.

    `apply` receives a private shallow copy of the cached pipeline: it may replace the copy's
    components freely, but must call `own(pipe, name)` before changing a component in place
    (fusing projections, channels_last, quantizing), so other cases never see the change.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""  # one line for `diffbench backends`
    requires: ClassVar[tuple[str, ...]] = ()  # distribution names that must be installed
    install_hint: ClassVar[str] = ""
    quality_floor: ClassVar[QualityFloor] = QualityFloor(ssim=0.99, psnr=35.0)
    lossy: ClassVar[bool] = False  # changes the numerics on purpose (quantization, caching)
    skips_work: ClassVar[bool] = False  # runs fewer FLOPs than eager (caching): --roofline counts its own
    matmul_dtype: ClassVar[str | None] = None  # the matmuls' dtype where it is not the pipeline's (fp8, int8)
    option_keys: ClassVar[frozenset[str]] = frozenset()
    default_options: ClassVar[dict[str, Any]] = {}  # a named variant is a subclass with other defaults
    # `--compiler-config` applies to every backend of this family (the seeds' flag for their compilers).
    config_family: ClassVar[str | None] = None
    # Eager's rounds can alternate with this backend's in one process (diffbench.measure.pairing): false for a
    # backend that moves or hooks the cached pipeline's own modules (offloading), which eager then runs on.
    pairable: ClassVar[bool] = True

    def __init__(self, options: dict[str, Any] | None = None):
        options = dict(options or {})
        unknown = sorted(set(options) - self.option_keys)
        if unknown:
            valid = ", ".join(sorted(self.option_keys)) or "none"
            raise OptionError(f"backend {self.name!r} has no option {', '.join(unknown)}; valid: {valid}")
        self.options = {**copy.deepcopy(self.default_options), **options}

    @property
    def isolated(self) -> bool:
        """True when this backend can kill or hang the interpreter, so each case runs in a child process."""
        return False

    def unavailable_reason(self, device: str) -> str | None:
        """Why this backend cannot run here (a skip reason a user can act on), or None."""
        for requirement in self.requires:
            try:
                importlib.metadata.version(requirement)
            except importlib.metadata.PackageNotFoundError:
                hint = self.install_hint or f"pip install {requirement}"
                return f"backend {self.name!r} needs the package {requirement!r}, not installed: {hint}"
        return None

    def unsupported_reason(self, case: "Case", spec: "ModelSpec", device: str) -> str | None:
        """Why this backend cannot run this case (task, family, device), or None."""
        return None

    def lora_unsupported_reason(self, mode: str) -> str | None:
        """Why this backend cannot run a case with a LoRA adapter in `mode` (unfused, fused, hotswap), or None."""
        return None

    def apply(self, pipe: Any) -> Any:
        """Return the pipeline to benchmark; the identity for the eager baseline."""
        return pipe

    def explain(self, message: str) -> str | None:
        """What a known failure message means and what to do about it, for the record; or None."""
        return None

    def restore(self, pipe: Any) -> None:
        """Undo what `apply` did to components shared with the cached pipeline (hooks, devices).

        Called once the case has ended, whatever its outcome, with the pipeline `apply` returned.
        """

    def versions(self) -> dict[str, str]:
        """Versions of the packages this backend relies on, for the machine info."""
        found = {}
        for requirement in self.requires:
            try:
                found[requirement] = importlib.metadata.version(requirement)
            except importlib.metadata.PackageNotFoundError:
                found[requirement] = "missing"
        return found


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator adding a backend to the registry under its `name`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two backends are named {cls.name!r}: {_REGISTRY[cls.name]} and {cls}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(entry_point.load())
        except Exception as error:  # a broken third-party plugin must not hide the built-in ones
            logger.warning("backend entry point %s failed to load: %s", entry_point.name, error)


def _import_builtin_modules() -> None:
    """Import every module of this package: each registers its backend, so adding one is one file."""
    import diffbench.backends as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "base":
            importlib.import_module(f"{package.__name__}.{module.name}")


@functools.cache
def _discover() -> None:
    _import_builtin_modules()
    _load_entry_points()


def registry() -> dict[str, type[Backend]]:
    """Every registered backend class by name, built-in ones in a stable order first."""
    _discover()
    builtin_order = ("eager", "compile")
    ordered = {name: _REGISTRY[name] for name in builtin_order if name in _REGISTRY}
    ordered.update(sorted(_REGISTRY.items()))
    return ordered


def get_backend_class(name: str) -> type[Backend]:
    backends = registry()
    if name not in backends:
        raise OptionError(f"unknown backend {name!r}; valid backends: {', '.join(backends)}")
    return backends[name]


def own(pipe: Any, component: str) -> Any:
    """Give `pipe` a private copy of `component`, so in-place changes stay private; returns it.

    The cached original is parked on the CPU while the case runs and copied there, so the case's
    peak memory holds the component once, as a user's pipeline would (not the cache's copy too); the
    runner brings it back afterwards (`unpark`). Owning a component twice returns the same copy.
    """
    owned = pipe.__dict__.setdefault("_diffbench_owned", {})
    if component in owned:
        return owned[component]
    original = getattr(pipe, component)
    device = park(pipe, original)
    module = copy.deepcopy(original)
    if device is not None:
        module.to(device)
    setattr(pipe, component, module)
    owned[component] = module
    return module


def park(pipe: Any, module: Any) -> Any:
    """Move a cached `module` to the CPU until `unpark(pipe)`; returns the device it was on, or None."""
    parameter = next(module.parameters(), None) if hasattr(module, "parameters") else None
    if parameter is None or parameter.device.type == "cpu":
        return None
    device = parameter.device  # read before the move: `to` swaps the parameter's data in place
    pipe.__dict__.setdefault("_diffbench_parked", []).append((module, device))
    module.to("cpu")
    return device


def unpark(pipe: Any) -> None:
    """Return every module `park` moved for `pipe` to its device."""
    for module, device in reversed(pipe.__dict__.pop("_diffbench_parked", [])):
        module.to(device)
