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
