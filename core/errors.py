"""kdsuite's error types for what a user can cause (config, grid, CLI, files). Their message names the field
or file, the value and what is allowed; the CLI prints it on one line and exits 2, never with a traceback."""


class KdsuiteError(Exception):
    """Any error kdsuite raises on purpose: the CLI prints its message and exits 2."""


class ConfigError(KdsuiteError, ValueError):
    """Bad user input; the message names the field, the value and what is allowed."""


class WriteError(KdsuiteError):
    """A file kdsuite writes could not be written (no space, no permission, a read-only file system): the
    message names the path and the system's reason; the file it would have replaced is kept."""

    def __init__(self, path, error: OSError):
        import errno as _errno

        self.path, self.errno = path, error.errno
        code = _errno.errorcode.get(error.errno or 0, "")
        reason = f"{error.strerror or error}" + (f" [{code}]" if code else "")
        hint = ("free space there, then run the same command again: a run resumes from its last checkpoint"
                if error.errno in (_errno.ENOSPC, _errno.EDQUOT) else "check that path's permissions and file system")
        super().__init__(f"{path}: could not be written ({reason}); any earlier version of it is kept — {hint}")


class DamagedDataError(ConfigError):
    """A data file that cannot be read or decoded; the message names its path and the reason. Raised inside
    a DataLoader worker, torch re-raises it in the main process with the worker's traceback as its message:
    the constructor keeps only the original message, so the CLI still prints one line."""

    def __init__(self, message: str = "") -> None:
        super().__init__(original_message(str(message)))


def original_message(text: str) -> str:
    """``text`` itself, or — for the message torch builds when it re-raises a worker's exception ("Caught X in
    DataLoader worker process N. Original Traceback (most recent call last): …") — the original message."""
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    lines = text.rstrip("\n").split("\n")
    for i in range(len(lines) - 1, 0, -1):  # the last unindented "module.Type: message" line
        head, sep, rest = lines[i].partition(": ")
        if sep and head and not head[0].isspace() and head.replace(".", "").replace("_", "").isalnum():
            return "\n".join([rest, *lines[i + 1:]]).strip()
    return text
