"""kdsuite's error types for what a user can cause (config, grid, CLI, files). Their message names the field
or file, the value and what is allowed; the CLI prints it on one line and exits 2, never with a traceback."""


class KdsuiteError(Exception):
    """Any error kdsuite raises on purpose: the CLI prints its message and exits 2."""


class ConfigError(KdsuiteError, ValueError):
    """Bad user input; the message names the field, the value and what is allowed."""
