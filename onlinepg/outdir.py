"""Claiming an output folder: the one place that decides whether a command may write into ``--out DIR``.

Every folder-writing subcommand (run, experiment, sweep, lq, plot) goes through ``OutDir``, so ``--out``,
``--overwrite`` and ``--resume`` mean the same everywhere:

* a fresh command needs DIR to be missing or empty;
* ``--overwrite`` replaces DIR only if it is recognisably a folder of the same kind (its ``.onlinepg.lock``
  names the kind, or it has the layout that kind writes) — never an unrelated folder — and only once the new
  command is known to start (``OutDir.replace``, called after every input has been validated and loaded);
* ``--resume`` continues DIR in place; together with ``--overwrite`` it is an error;
* one writer per folder: ``DIR/.onlinepg.lock`` is held with ``fcntl.flock`` for the command's life (the OS
  releases it on any exit, SIGKILL included); a second writer is refused with one clear line;
* a command refused before ``replace`` leaves nothing behind: a folder (and lock file) it created is removed.

``write_text`` and ``write_bytes`` write a file atomically (temporary name, fsync, rename), so a crash or a
full disk never leaves a truncated file under the final name.
"""
import errno
import os
import pathlib
import shutil

from .errors import ConfigError

LOCK = ".onlinepg.lock"
PSEUDO_FS = ("/proc", "/sys")
# The layout each kind writes, for folders written before the lock file existed (or whose lock file was lost).
_LAYOUT = {
    # a run folder, or what a sweep driver leaves in a cell whose run failed before it started (cell.json)
    "run": lambda names: names == {"cell.json"} or (
        "config.toml" in names and bool(names & {"checkpoints", "eval", "rounds", "summary.json", "base.npz"})),
    "sweep": lambda names: "sweep.json" in names,
    "experiment": lambda names: bool(names & {"results.md", "checks.json"}) and names <= {
        "runs", "figures", "results.md", "results.parquet", "checks.json", "verdict.json"},
    "lq": lambda names: bool(names) and names <= {"lq.parquet"},
    "figures": lambda names: bool(names) and all(n.endswith(".png") for n in names),
}


def check_path(out, option="--out"):
    """``out`` as a Path, refused up front when it cannot be an output folder (a file, a pseudo-filesystem)."""
    if out is None or isinstance(out, bool) or not isinstance(out, (str, os.PathLike)) or str(out) == "":
        raise ConfigError(f"{option} must be a folder path (a string or pathlib.Path), got {out!r}")
    path = pathlib.Path(out)
    real = os.path.realpath(path)
    for root in PSEUDO_FS:
        if real == root or real.startswith(root + "/"):
            raise ConfigError(f"{option}: {path} is under {root}, a kernel pseudo-filesystem; choose a folder on "
                              "a real disk")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option}: {path} is a file, not a folder; choose a folder path")
    return path


def flags(overwrite, resume):
    """Check the --overwrite/--resume pair (bools; not both)."""
    for name, value in (("overwrite", overwrite), ("resume", resume)):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    if overwrite and resume:
        raise ConfigError("--resume and --overwrite exclude each other: --resume continues the folder, "
                          "--overwrite replaces it; pass one")


def recognised(path, kind):
    """True if ``path`` is a folder written by an onlinepg command of ``kind``: its lock file names the kind,
    or (no lock file, or an empty one) it has the layout that kind writes."""
    path = pathlib.Path(path)
    try:
        names = {p.name for p in path.iterdir()}
    except OSError:
        return False
    if LOCK in names:
        try:
            mark = (path / LOCK).read_text().strip()
        except (OSError, UnicodeDecodeError):
            mark = "?"
        if mark:
            return mark == f"onlinepg {kind}"
    return _LAYOUT[kind](names - {LOCK})


class OutDir:
    """``with OutDir(out, "run", overwrite=..., resume=...) as d:`` — the folder claimed for this process.

    On entry: the path is checked, the folder created if missing, the lock taken, and the folder's state
    checked against the mode (fresh: empty; overwrite: empty or recognisably ``kind``; resume: anything, the
    caller checks what it needs). ``d.replace()`` empties it (keeping the lock) and marks it as ``kind``:
    call it once the new command is known to start. An exception before ``replace`` undoes what entry created.
    """

    def __init__(self, out, kind, *, overwrite=False, resume=False, option="--out"):
        flags(overwrite, resume)
        self.path = check_path(out, option)
        self.kind, self.overwrite, self.resume, self.option = kind, overwrite, resume, option
        self._fd = None
        self._created = []          # folders this claim created (outermost first)
        self._created_lock = False
        self.committed = False

    def __enter__(self):
        import fcntl
        try:
            missing = []
            p = self.path
            while not p.exists():
                missing.append(p)
                p = p.parent
            self._created = list(reversed(missing))
            self.path.mkdir(parents=True, exist_ok=True)
            lock = self.path / LOCK
            self._created_lock = not lock.exists()
            self._fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self._undo()
            raise ConfigError(f"{self.option}: cannot create {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            os.close(self._fd)
            self._fd = None
            raise ConfigError(f"{self.option}: another onlinepg process is writing to {self.path} (it holds "
                              f"{LOCK}); wait for it to finish or choose another folder") from None
        try:
            self._check()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _check(self):
        others = [p for p in self.path.iterdir() if p.name != LOCK]
        if self.resume or not others:
            return
        if not self.overwrite:
            extra = " or --resume to continue it" if self.kind in ("run", "sweep", "experiment") else ""
            raise ConfigError(f"{self.option}: folder {self.path} is not empty; pass --overwrite (overwrite=True) "
                              f"to replace it{extra}")
        if not recognised(self.path, self.kind):
            article = "an" if self.kind in ("experiment", "lq") else "a"
            raise ConfigError(f"--overwrite: {self.path} is not {article} {self.kind} folder written by onlinepg; "
                              "refusing to delete it (remove it yourself or choose another --out)")

    def replace(self):
        """Empty the folder (keeping the lock) when overwriting, mark it as ``kind`` and commit the claim."""
        if self.overwrite:
            for p in self.path.iterdir():
                if p.name == LOCK:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"onlinepg {self.kind}\n".encode(), 0)
        self.committed = True
        return self.path

    def _undo(self):
        if self._created_lock:
            try:
                (self.path / LOCK).unlink()
            except OSError:
                pass
        for p in reversed(self._created):
            try:
                p.rmdir()
            except OSError:
                break

    def __exit__(self, exc_type, exc, tb):
        if not self.committed:
            self._undo()
        if self._fd is not None:
            os.close(self._fd)          # releases the flock
            self._fd = None
        return False


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


def write_text(path, text):
    return write_bytes(path, text.encode())
