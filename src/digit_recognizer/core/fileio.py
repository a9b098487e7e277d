"""Each output written whole (a temporary name, then a rename), or one line on why not."""
import os
from contextlib import suppress
from pathlib import Path

from .errors import UserError


def os_reason(exc: OSError) -> str:
    """'no space left on device', 'read-only file system', ... as a lower-case phrase."""
    return exc.strerror.lower() if exc.strerror else str(exc)


def atomic_write(path: Path, write) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write it ({os_reason(exc)}); nothing was written") from None
    finally:
        with suppress(OSError):  # nothing half-written is left, whatever happened
            temp.unlink(missing_ok=True)

