"""Backends: every module in this package defines one and registers it with `@register`."""

from diffbench.backends.base import (
    Backend,
    QualityFloor,
    get_backend_class,
    own,
    register,
    registry,
)

__all__ = ["Backend", "QualityFloor", "get_backend_class", "own", "register", "registry"]
