"""diffbench: pytest-driven benchmarks for accelerated diffusion-model inference."""

__version__ = "0.1.0"
