"""The one error type for bad user input (config, grid, CLI, files). Its message names the field or file,
the value and what is allowed; the CLI prints it and exits 2, never with a traceback."""


class ConfigError(ValueError):
    """Bad user input; the message names the field, the value and what is allowed."""
