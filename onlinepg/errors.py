"""The one error type users see for bad input."""


class ConfigError(ValueError):
    """Invalid argument or config value. The message names the field and the accepted values."""
