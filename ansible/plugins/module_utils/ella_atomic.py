"""Files that readers see whole: the old content or the new one, never a part of either.
Shared by the modules that write state on the hosts (the release journal, the deploy lock's
holder, a backup's manifest, ELLA's configuration and supervisor.cfg)."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path, content, mode=0o640):
    """Replace `path` by `content` (text or bytes): written to a temporary file beside it (a
    name of its own: two writers never share one), given `mode`, flushed to disk, then renamed
    over `path`. The temporary file does not outlive a failure."""
    data = content.encode() if isinstance(content, str) else content
    directory, name = os.path.split(path)
    handle, temporary = tempfile.mkstemp(prefix=".%s." % name, dir=directory or ".")
    try:
        with os.fdopen(handle, "wb") as written:
            os.fchmod(written.fileno(), mode)
            written.write(data)
            written.flush()
            os.fsync(written.fileno())
        os.rename(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
