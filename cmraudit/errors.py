"""Error hierarchy and exit codes (docs/design.md § 8).

Every error raised on purpose by cmraudit subclasses :class:`CmrAuditError` *and* a
builtin, so callers may catch either. The CLI maps each class to one exit code and
prints one line on stderr; tracebacks only with ``--debug``.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_PLUGIN = 3
EXIT_DATA = 4
EXIT_INTERNAL = 5


class CmrAuditError(Exception):
    """Base of every deliberate cmraudit error."""

    exit_code = EXIT_INTERNAL


class UsageError(CmrAuditError, ValueError):
    """A bad option, argument, config or policy file (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration or policy that cannot be used (exit 2)."""


class ReportSchemaError(UsageError):
    """A report.json that does not validate against the schema (exit 2)."""


class PluginError(CmrAuditError, RuntimeError):
    """A generator plugin that is missing, broken or violates the protocol (exit 3)."""

    exit_code = EXIT_PLUGIN


class NotFittedError(PluginError, AttributeError):
    """A generator used before ``fit`` (exit 3)."""


class CheckpointError(PluginError):
    """A model folder or checkpoint that is missing, malformed or cannot be loaded safely (exit 4: bad input data).

    Still a PluginError subclass so older ``except PluginError`` code keeps catching it.
    """

    exit_code = EXIT_DATA


class DataError(CmrAuditError, ValueError):
    """Input data that cannot be read or violates the dataset format (exit 4)."""

    exit_code = EXIT_DATA


class MissingExtraError(CmrAuditError, ImportError):
    """An optional dependency is not installed; the message names the pip command (exit 2)."""

    exit_code = EXIT_USAGE


class GateFailed(CmrAuditError):
    """A privacy gate rule failed (exit 1)."""

    exit_code = EXIT_GATE_FAILED
