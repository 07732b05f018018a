"""Atomic, locked output: where a build writes and how it swaps the finished report into place.

* :class:`OutputLock` takes an exclusive ``flock`` on ``.OUT.lock`` beside ``--out`` (so it works before OUT
  exists): a second build into the same place waits (``wait=True``) or fails with :class:`OutputBusyError`.
* :func:`clean_stale` (called with the lock held) removes ``.OUT.tmp-*`` / ``.OUT.old-*`` left by killed builds,
  first restoring the previous report from an ``.old-*`` folder if a kill fell between the two renames of the
  non-atomic fallback swap.
* :func:`swap_in` replaces a folder report with one atomic ``renameat2(RENAME_EXCHANGE)`` where the kernel has it
  (else two renames), and a single-file report (``--out report.html``) with one ``os.replace``.

Whatever happens (exception, Ctrl-C, SIGTERM, SIGKILL, a full disk), the previous report stays complete.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Literal

from ..errors import OutputError
from ..report import plural

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking
    fcntl = None  # type: ignore[assignment]

MARKER = "report.json"
GENERATOR_TAG = b'<meta name="generator" content="reportgen'


class OutputBusyError(OutputError):
    """Another build holds the lock on the same ``--out``."""


def is_single_file_target(out: Path) -> bool:
    """``--out something.html`` asks for one HTML file rather than a folder."""
    return out.suffix.lower() in (".html", ".htm")


def sibling(out: Path, kind: str) -> Path:
    """``.OUT.<kind>`` beside ``out`` (``lock``), or a fresh ``.OUT.<kind>-<random>`` (``tmp``, ``old``)."""
    name = f".{out.name}.{kind}" if kind == "lock" else f".{out.name}.{kind}-{uuid.uuid4().hex[:8]}"
    return out.parent / name


class OutputLock:
    """Exclusive advisory lock on ``.OUT.lock`` (fcntl.flock), released (and the file removed) on exit."""

    def __init__(self, out: Path, wait: bool = False, log: Callable[[str], None] | None = None,
                 poll_s: float = 0.2):
        self.out = Path(out)
        self.path = sibling(self.out, "lock")
        self.wait = wait
        self.log = log or (lambda s: None)
        self.poll_s = poll_s
        self.fd: int | None = None

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
            return f" (process {pid})" if pid.isdigit() else ""
        except OSError:
            return ""

    def acquire(self) -> "OutputLock":
        if fcntl is None:  # pragma: no cover
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if not self.wait:
                    raise OutputBusyError(
                        f"another reportgen build is writing {self.out}{self._holder()}; wait for it to finish, "
                        "or pass --wait to queue behind it") from None
                if not told:
                    self.log(f"Waiting for another build writing {self.out}{self._holder()} to finish...")
                    told = True
                time.sleep(self.poll_s)
                continue
            # The holder before us may have removed the file after we opened it: lock the file on disk.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self.fd = fd
            return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()  # under the lock: waiters re-check the inode and retry
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> Literal[False]:
        self.release()
        return False


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except OSError:
            pass


def clean_stale(out: Path, log: Callable[[str], None] | None = None) -> list[str]:
    """Remove temp/old siblings of ``out`` left by killed builds (call with the lock held). Returns their names."""
    out = Path(out)
    parent = out.parent
    if not parent.is_dir():
        return []
    tmps = sorted(parent.glob(f".{out.name}.tmp-*"))
    olds = sorted(parent.glob(f".{out.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    if olds and not out.exists():  # killed between the two renames of the fallback swap: put it back
        os.replace(olds[0], out)
        if log:
            log(f"Restored the previous report {out} left aside by an interrupted build")
        olds = olds[1:]
    removed = []
    for p in tmps + olds:
        _remove(p)
        removed.append(p.name)
    if removed and log:
        log(f"Removed {plural(len(removed), 'temporary folder')} left by interrupted builds: {', '.join(removed)}")
    return removed


def check_out(out: Path, images: str | Path | None = None) -> None:
    """Refuse outputs that would destroy something that is not a report, or read the report as input."""
    out = Path(out)
    if is_single_file_target(out):
        if out.is_dir():
            raise OutputError(f"--out {out} is a folder; a single-file report needs a file name")
        if out.exists():
            with open(out, "rb") as f:
                head = f.read(4096)
            if GENERATOR_TAG not in head:
                raise OutputError(f"--out {out} exists and is not a reportgen report; refusing to replace it")
    else:
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out} exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
            raise OutputError(
                f"--out {out} is a non-empty folder that is not a reportgen report; refusing to replace it. "
                "Choose a new or empty folder."
            )
    if images is not None:
        img_root = Path(images)
        img_root = img_root.parent if img_root.is_file() else img_root
        o: Path | None
        i: Path | None
        try:
            o, i = out.resolve(), img_root.resolve()
        except OSError:
            o = i = None
        if o is not None and (o == i or i in o.parents):
            raise OutputError(
                f"--out {out} is inside the image folder {images}: the report's own pictures would be read as "
                "input by the next build. Choose an output outside the image folder.")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {parent}: {e.strerror or e}") from None
    _probe_writable(parent)


def _probe_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``: os.access says yes to root everywhere, even in /proc."""
    try:
        fd, name = tempfile.mkstemp(prefix=".reportgen-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise OutputError(f"cannot write into {folder}: {e.strerror or e}") from None


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False when unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished ``tmp`` folder in the place of ``out``; the old report survives until then."""
    if out.exists() and _exchange(tmp, out):
        _remove(tmp)  # now holds the previous report
        return
    old = None
    if out.exists():
        old = sibling(out, "old")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        _remove(old)


def publish_file(src: Path, out: Path) -> None:
    """Single-file mode: ``src`` (on the same file system) replaces ``out`` atomically."""
    os.replace(src, out)


def embed_json(page: Path, data: Path) -> None:
    """Put report.json inside a single-file page as an inert ``application/json`` block (never executed)."""
    text = page.read_text(encoding="utf-8")
    blob = data.read_text(encoding="utf-8").replace("<", "\\u003c")  # no "</script>" can appear
    block = f'<script type="application/json" id="reportgen-report">\n{blob}\n</script>\n'
    k = text.rfind("</body>")
    page.write_text(text[:k] + block + text[k:] if k >= 0 else text + block, encoding="utf-8")


class TermAsInterrupt:
    """Turn SIGTERM into KeyboardInterrupt while building, so cleanup in ``finally`` runs."""

    def __enter__(self):
        self.old = None
        try:
            self.old = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            self.old = None
        return self

    @staticmethod
    def _handler(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def disk_error(e: OSError, what: Path) -> OutputError:
    """An OSError while writing the report as a one-line user error (the previous report is unchanged)."""
    reason = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}.get(e.errno or 0)
    reason = reason or (e.strerror or str(e))
    return OutputError(f"could not write the report next to {what}: {reason}; nothing was replaced "
                       "(any previous report is unchanged)")
