"""The OneDiff backends (nexfort, nexfort-fp8, oneflow) against stand-in packages written into tmp_path."""

from __future__ import annotations

import copy
import importlib.metadata
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from packaging.version import Version

from diffbench.backends.base import get_backend_class, registry
from diffbench.backends.onediff import SEED_NEXFORT_OPTIONS
from diffbench.backends.onediff_failures import explain_failure
from diffbench.config.matrix import build_settings
from diffbench.errors import OptionError

# nexfort 0.1.dev330's pin, unless this is the pinned environment itself (.ci/onediff-env runs these too).
OTHER_TORCH = "2.4.0+cu121" if torch.__version__ != "2.4.0+cu121" else "2.5.1+cu124"
STAND_IN_PACKAGES = ("onediffx", "onediff", "nexfort", "oneflow", "triton")

# Stands in for onediffx 1.2.0: records its calls and changes what it gets in place, as the real one does
# (fuses projections into the modules, deletes "memory_format" from the options dict it is handed).
ONEDIFFX = """
import onediff  # the real onediffx imports onediff without declaring it
CALLS = []

def quantize_pipe(pipe, quant_submodules_config_path=None, top_percentage=90, *, ignores=(), **kwargs):
    CALLS.append(("quantize_pipe", pipe, dict(ignores=ignores, **kwargs)))
    kwargs.pop("quant_type", None)
    pipe.unet.weight.data.mul_(0.5)
    return pipe

def compile_pipe(pipe, *, backend="oneflow", options=None, ignores=(), fuse_qkv_projections=False):
    CALLS.append(("compile_pipe", pipe, dict(backend=backend, options=copy_of(options), ignores=ignores,
                                             fuse_qkv_projections=fuse_qkv_projections)))
    if options is not None:
        options.pop("memory_format", None)
    pipe.unet.weight.data.add_(1.0)
    pipe.vae.weight.data.add_(1.0)
    return pipe

def copy_of(options):
    import copy
    return copy.deepcopy(options)
"""
NEXFORT_PIN = """
def check_torch_version():
    import torch
    torch_version = torch.__version__
    if torch_version == '{torch}':
        return
    raise Exception("The torch version(torch=={torch}) of nexfort's compilation environment conflicts")
"""
TRITON_PIN = """
def check_triton_version():
    import triton
    triton_version = triton.__version__
    if triton_version == '{triton}':
        return
"""


def write_package(
    root: Path,
    name: str,
    version: str,
    init: str = "",
    files: dict[str, str] | None = None,
    requires: tuple[str, ...] = (),
) -> None:
    """A package `name` and its `name-version.dist-info/METADATA`, so importlib.metadata finds it."""
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(init))
    for relative, text in (files or {}).items():
        (package / relative).write_text(text)
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {requirement}" for requirement in requires]
    (info / "METADATA").write_text("\n".join(metadata) + "\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder first on sys.path for stand-in packages; their imported modules are dropped afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    for variable in ("NEXFORT_FORCE_CHECK_TORCH_VERSION", "NEXFORT_FORCE_CHECK_TRITON_VERSION"):
        monkeypatch.delenv(variable, raising=False)
    yield root
    for name in [name for name in sys.modules if name.split(".")[0] in STAND_IN_PACKAGES]:
        if getattr(sys.modules[name], "__file__", "") and str(root) in sys.modules[name].__file__:
            del sys.modules[name]


def require_absent(distribution: str) -> None:
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return
    pytest.skip(f"{distribution} {version} is really installed here, so its absence cannot be staged")


def add_onediff(root: Path) -> None:
    write_package(root, "onediffx", "1.2.0", ONEDIFFX)
    write_package(root, "onediff", "1.2.0")


def add_nexfort(root: Path, torch_pin: str | None = None, triton_pin: str | None = None) -> None:
    """nexfort whose import fails loudly: the availability check must read it, never import it."""
    check = NEXFORT_PIN.format(torch=torch_pin or torch.__version__)
    check += TRITON_PIN.format(triton=triton_pin) if triton_pin else ""
    write_package(
        root,
        "nexfort",
        "0.1.dev330",
        'raise RuntimeError("nexfort was imported")',
        files={"check_compiled_env_meta.py": check},
        requires=("torch<=2.5.1,>=2.3.0",),
    )


def add_oneflow(root: Path, real: bool) -> None:
    files = {"_oneflow_internal.cpython-311-x86_64-linux-gnu.so": ""} if real else {}
    write_package(
        root,
        "oneflow",
        "1.0.0.dev1" if real else "0.7.0",
        'raise RuntimeError("This package is a placeholder.")',
        files=files,
    )


def reason(name: str, **options) -> str | None:
    return get_backend_class(name)(options or None).unavailable_reason("cpu")


def test_registered_with_the_seeds_defaults():
    assert {"nexfort", "nexfort-fp8", "oneflow"} <= set(registry())
    nexfort = get_backend_class("nexfort")()
    assert nexfort.options == {"options": SEED_NEXFORT_OPTIONS, "fuse_qkv_projections": True}
    assert get_backend_class("nexfort").config_family is None  # --compiler-config is torch.compile's
    fp8 = get_backend_class("nexfort-fp8")()
    assert fp8.options["quantize"] == {"quant_type": "fp8_e4m3_e4m3_dynamic"} and fp8.lossy


def test_missing_onediffx_names_the_install(site):
    require_absent("onediffx")
    for name in ("nexfort", "nexfort-fp8", "oneflow"):
        assert "needs onediffx, not installed: pip install onediffx onediff" in reason(name)
    assert ".ci/onediff-env" in reason("nexfort")


def test_missing_onediff_says_onediffx_imports_it_undeclared(site):
    require_absent("onediff")
    write_package(site, "onediffx", "1.2.0", ONEDIFFX)
    message = reason("nexfort")
    assert "onediffx 1.2.0 imports onediff without declaring it" in message
    assert message.endswith("pip install onediff")


def test_missing_nexfort(site):
    require_absent("nexfort")
    add_onediff(site)
    assert "needs nexfort, not installed: pip install onediffx onediff nexfort" in reason("nexfort")


def test_nexfort_with_another_torch_names_both_and_the_fix_without_importing_it(site):
    add_onediff(site)
    add_nexfort(site, torch_pin=OTHER_TORCH)
    message = reason("nexfort")
    assert f"torch {torch.__version__}" in message and f"exactly torch {OTHER_TORCH}" in message
    assert "bash .ci/onediff-env" in message
    assert reason("nexfort-fp8") == message.replace("'nexfort'", "'nexfort-fp8'")  # and nothing was imported


def test_nexfort_torch_check_switched_off_as_nexfort_allows(site, monkeypatch):
    add_onediff(site)
    add_nexfort(site, torch_pin=OTHER_TORCH)
    monkeypatch.setenv("NEXFORT_FORCE_CHECK_TORCH_VERSION", "0")
    assert reason("nexfort") is None


def test_nexfort_triton_pin(site):
    require_absent("triton")
    add_onediff(site)
    add_nexfort(site, triton_pin="3.0.0")
    assert "exactly triton 3.0.0" in reason("nexfort") and "no triton" in reason("nexfort")
    write_package(site, "triton", "3.0.0")
    assert reason("nexfort") is None


def test_nexfort_without_the_pin_file_falls_back_to_its_declared_requirement(site):
    add_onediff(site)
    write_package(site, "nexfort", "0.2.0", requires=("torch<=2.5.1,>=2.3.0",))
    message = reason("nexfort")
    if Version("2.3") <= Version(torch.__version__.split("+")[0]) <= Version("2.5.1"):
        assert message is None
    else:
        assert "requires torch<=2.5.1,>=2.3.0" in message and torch.__version__ in message


def test_oneflow_missing_and_placeholder(site):
    require_absent("oneflow")
    add_onediff(site)
    assert "OneFlow is not installed, and PyPI has no real build" in reason("oneflow")
    add_oneflow(site, real=False)
    message = reason("oneflow")
    assert "oneflow 0.7.0 is PyPI's placeholder" in message and "pip uninstall -y oneflow" in message


def test_everything_present_means_available(site):
    add_onediff(site)
    add_nexfort(site)
    add_oneflow(site, real=True)
    assert [reason(name) for name in ("nexfort", "nexfort-fp8", "oneflow")] == [None, None, None]


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "Exception: The torch version(torch==2.4.0+cu121) of nexfort's compilation environment conflicts with "
            "the current environment(torch==2.13.0+cpu)!",
            "exactly torch 2.4.0+cu121",
        ),
        ("ModuleNotFoundError: No module named 'nexfort.inductor.codegen'", '"mode": "jit"'),
        (
            "isolated case: the child process exited with code 1 before returning a result\nKey is empty.",
            "SILICON_ONEDIFF_LICENSE_KEY",
        ),
        ("ModuleNotFoundError: No module named 'oneflow'", "pip install -U --pre oneflow -f"),
        ("RuntimeError: This package is a placeholder. Please install oneflow", "placeholder"),
        ("ModuleNotFoundError: No module named 'onediff'", "pip install onediff"),
        (
            "RuntimeError: torch._scaled_mm is only supported on CUDA devices with compute capability >= 9.0 or 8.9",
            "compute capability 8.9",
        ),
        ("RuntimeError: SymIntArrayRef expected to contain only concrete integers", '"dynamic": false'),
        ("AssertionError: Device not support fp8 dtype!", "compute capability 8.9"),
        ("ValueError: cannot create std::vector larger than max_size()", "malformed key"),
        ("KeyError: torch.float32", "--dtype float16"),
    ],
)
def test_known_failures_are_explained(raw, expected):
    assert expected in explain_failure(raw)
    assert get_backend_class("nexfort")().explain(raw) == explain_failure(raw)


def test_unknown_failure_has_no_explanation():
    assert explain_failure("ValueError: something else entirely") is None


class StandInPipe:
    """The attributes compile_pipe looks at; real modules so `own` deep-copies weights."""

    def __init__(self):
        self.unet = torch.nn.Linear(2, 2)
        self.vae = torch.nn.Linear(2, 2)
        self.text_encoder = torch.nn.Linear(2, 2)
        self.transformer = None


def apply_on_copy(site, name, **options):
    """(cached pipe, the copy handed to apply, what apply returned, the stand-in onediffx's calls)."""
    add_onediff(site)
    import onediffx

    cached = StandInPipe()
    weights = {part: getattr(cached, part).weight.clone() for part in ("unet", "vae", "text_encoder")}
    backend = get_backend_class(name)(options or None)
    handed = copy.copy(cached)  # what runner's shallow_copy is: a new pipeline over the same modules
    result = backend.apply(handed)
    for part, weight in weights.items():
        assert torch.equal(getattr(cached, part).weight, weight), f"the cached {part} was changed"
        assert getattr(result, part) is not getattr(cached, part), f"{part} was not made private"
    return backend, result, onediffx.CALLS


def test_nexfort_apply_calls_compile_pipe_like_the_seeds_on_private_copies(site):
    backend, result, calls = apply_on_copy(site, "nexfort")
    assert [call[0] for call in calls] == ["compile_pipe"]
    _, pipe, arguments = calls[0]
    assert pipe is result
    assert arguments == {
        "backend": "nexfort",
        "options": SEED_NEXFORT_OPTIONS,
        "ignores": [],
        "fuse_qkv_projections": True,
    }
    assert backend.options["options"]["memory_format"] == "channels_last"  # compile_pipe got a copy
    assert not backend.isolated


def test_nexfort_fp8_quantizes_then_compiles_in_a_child_process(site):
    backend, result, calls = apply_on_copy(site, "nexfort-fp8", options={"mode": "jit"})
    assert [call[0] for call in calls] == ["quantize_pipe", "compile_pipe"]
    assert calls[0][2] == {"ignores": [], "quant_type": "fp8_e4m3_e4m3_dynamic"}
    assert calls[1][2]["options"] == {"mode": "jit"}
    assert backend.options["quantize"] == {"quant_type": "fp8_e4m3_e4m3_dynamic"}  # quantize_pipe got a copy
    assert backend.isolated and get_backend_class("nexfort")({"quantize": {"quant_type": "int8"}}).isolated


def test_oneflow_apply_uses_onediffx_default_backend(site):
    _, _, calls = apply_on_copy(site, "oneflow")
    assert calls[0][2] == {"backend": "oneflow", "options": None, "ignores": [], "fuse_qkv_projections": False}


def test_ignored_components_stay_shared(site):
    add_onediff(site)
    cached = StandInPipe()
    get_backend_class("nexfort")({"ignores": ["text_encoder"]}).apply(copy.copy(cached))
    import onediffx

    assert onediffx.CALLS[-1][1].text_encoder is cached.text_encoder


def test_options_are_checked_and_come_from_backend_config():
    with pytest.raises(OptionError, match="'options' must be a JSON object"):
        get_backend_class("nexfort")({"options": "jit"})
    with pytest.raises(OptionError, match="has no option"):
        get_backend_class("oneflow")({"quantize": {}})
    settings = build_settings(
        {
            "models": "tiny-sdxl",
            "backends": "eager,nexfort",
            "backend_config": ['nexfort={"options": {"mode": "jit", "dynamic": false}}'],
            "compiler_config": '{"mode": "max-autotune"}',
        }
    )
    assert settings.backend_options["nexfort"] == {"options": {"mode": "jit", "dynamic": False}}


def test_fp8_needs_a_recent_gpu():
    fp8 = get_backend_class("nexfort-fp8")()
    assert "compute capability 8.9" in fp8.unsupported_reason(None, None, "cpu")
    assert get_backend_class("nexfort")().unsupported_reason(None, None, "cpu") is None
    int8 = get_backend_class("nexfort")({"quantize": {"quant_type": "int8_dynamic"}})
    assert int8.unsupported_reason(None, None, "cpu") is None and int8.isolated
