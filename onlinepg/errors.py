"""The one error type users see for bad input."""


class ConfigError(ValueError):
    """Invalid argument or config value. The message names the field and the accepted values."""


class RunError(RuntimeError):
    """A run that could not go on for a reason outside its arguments (e.g. the disk is full). The message
    says what happened and how to continue."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the message says what was saved and how to resume."""
