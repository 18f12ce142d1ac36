"""One exception family, so callers can catch the harness's own failures."""


class HarnessError(Exception):
    """Base class for errors raised by the harness."""


class ConfigError(HarnessError, ValueError):
    """A profile, prompt file or argument has a bad value."""


class MissingResourceError(HarnessError, RuntimeError):
    """Weights or data that cannot be found or fetched on this machine."""


def choices_error(what: str, value: object, valid) -> ConfigError:
    """The one shape of error for a bad choice: names the value and lists the valid ones."""
    valid_list = ", ".join(repr(v) for v in sorted(valid, key=str))
    return ConfigError(f"unknown {what} {value!r}; valid choices: {valid_list}")
