"""The exceptions diffbench raises, one tree so callers can catch what they can act on."""


class DiffbenchError(Exception):
    """Base of every error diffbench raises on purpose."""


class OptionError(DiffbenchError, ValueError):
    """A command-line value or config is invalid; the message names it and the valid values."""


class UnavailableError(DiffbenchError):
    """A case cannot run on this machine (no GPU, package missing, weights absent): a skip."""


class QualityError(DiffbenchError, AssertionError):
    """An accelerated output differs from the eager reference by more than the backend's floor."""


class CaseFailure(DiffbenchError):
    """A case failed in a way already recorded (e.g. its isolated child process died or hung)."""
