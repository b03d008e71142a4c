"""Claiming an output folder: the one place that decides whether a command may write into ``--out DIR``, and
the record of what it wrote there, so that ``--overwrite`` can never delete a file the tool did not write.

Every folder-writing subcommand (run, experiment, sweep, lq, plot) goes through ``OutDir``, so ``--out``,
``--overwrite`` and ``--resume`` mean the same everywhere:

* a fresh command needs DIR to be missing or empty;
* ``--overwrite`` replaces DIR only if its manifest (below) is valid, is of the same kind, and accounts for
  every file, folder and link in DIR — anything else there (a user's file, a symlink, a folder of another
  tool), a missing or damaged manifest, or a manifest of another kind refuses the whole command in one line
  with nothing touched. It then removes exactly the files and folders the manifests list, and only once the
  new command is known to start (``OutDir.replace``, called after every input has been validated and loaded).
  The root folder, the home folder and the current folder (or any folder holding it) are never replaced;
* ``--resume`` continues DIR in place; together with ``--overwrite`` it is an error;
* one writer per folder: ``DIR/.onlinepg.lock`` is held with ``fcntl.flock`` for the command's life (the OS
  releases it on any exit, SIGKILL included); a second writer is refused with one clear line. The lock file
  only locks: it never makes a folder the tool's;
* a command refused before ``replace`` leaves nothing behind: a folder (and lock file) it created is removed.

The manifest, ``DIR/.onlinepg.manifest``, is JSON lines: a header ``{"onlinepg": "manifest", "version": 1,
"kind": KIND}`` written atomically when the folder is claimed (it is the folder's marker), then one line per
thing written, appended *before* it is written (``record``), so a command killed at any moment leaves a
manifest that lists everything on disk (and perhaps a file it never got to write; a torn last line is
ignored). Lines are ``{"f": PATH}`` for a file (trace parts and checkpoints add their row count and config
hash: ``--resume`` checks them), ``{"d": PATH}`` for a folder, ``{"c": PATH}`` for a folder claimed by a
nested command (an experiment's runs, a sweep's cells, a run's figures), which has a manifest of its own;
PATH is relative to DIR and never leaves it. An atomic write's temporary sibling ``.NAME.tmp`` counts as
NAME's. Symbolic links are never followed, and never the tool's.

``write_text`` and ``write_bytes`` record and write a file atomically (temporary name, fsync, rename), so a
crash or a full disk never leaves a truncated file under the final name.
"""
import errno
import json
import os
import pathlib
import stat

from .errors import ConfigError

LOCK = ".onlinepg.lock"
MANIFEST = ".onlinepg.manifest"
KINDS = ("run", "sweep", "experiment", "lq", "figures")
PSEUDO_FS = ("/proc", "/sys")
MAX_NESTING = 16                 # claims inside claims (experiment → run → figures is 3)
_ACTIVE = {}                     # absolute folder path → the OutDir of this process that holds it


def _article(kind):
    return "an" if kind in ("experiment", "lq") else "a"


def check_path(out, option="--out"):
    """``out`` as a Path, refused up front when it cannot be an output folder (a file, a pseudo-filesystem, a
    name longer than the OS allows)."""
    if out is None or isinstance(out, bool) or not isinstance(out, (str, os.PathLike)) or str(out) == "":
        raise ConfigError(f"{option} must be a folder path (a string or pathlib.Path), got {out!r}")
    path = pathlib.Path(out)
    text = os.fsencode(os.path.abspath(path))
    name_max = _pathconf(path, "PC_NAME_MAX", 255)
    long = next((p for p in path.parts if len(os.fsencode(p)) > name_max), None)
    if long is not None:
        raise ConfigError(f"{option}: the path component {long[:40]!r}… is {len(os.fsencode(long))} bytes long; "
                          f"this file system allows at most {name_max} bytes a name")
    path_max = _pathconf(path, "PC_PATH_MAX", 4096)
    # the deepest file a command writes (e.g. runs/ARM/key=value/seed=S/rounds/.part-….parquet.tmp) needs room
    if len(text) + 160 > path_max:
        raise ConfigError(f"{option}: the path {str(path)[:40]!r}… is {len(text)} bytes long; this file system "
                          f"allows paths of at most {path_max} bytes and the files written inside need "
                          "about 160 more: choose a shorter path")
    real = os.path.realpath(path)
    for root in PSEUDO_FS:
        if real == root or real.startswith(root + "/"):
            raise ConfigError(f"{option}: {path} is under {root}, a kernel pseudo-filesystem; choose a folder on "
                              "a real disk")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option}: {path} is a file, not a folder; choose a folder path")
    return path


def _pathconf(path, name, default):
    p = os.path.abspath(path)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    try:
        return os.pathconf(p, name)
    except (OSError, ValueError):
        return default


def flags(overwrite, resume):
    """Check the --overwrite/--resume pair (bools; not both)."""
    for name, value in (("overwrite", overwrite), ("resume", resume)):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    if overwrite and resume:
        raise ConfigError("--resume and --overwrite exclude each other: --resume continues the folder, "
                          "--overwrite replaces it; pass one")


# -- the manifest ------------------------------------------------------------------------------------------

def _safe_rel(rel):
    """A manifest path: relative, normalised, inside its folder."""
    return (isinstance(rel, str) and rel not in ("", ".") and not rel.startswith("/") and "\0" not in rel
            and all(part not in ("", ".", "..") for part in rel.split("/")))


def read_manifest(folder):
    """(kind, entries) of ``folder``'s manifest, or None if it is missing, unreadable or not valid."""
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as fh:
            text = fh.read().decode()
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.split("\n")[:-1]            # a last line without its newline is torn: never written whole
    try:
        head = json.loads(lines[0]) if lines else None
    except ValueError:
        return None
    if (not isinstance(head, dict) or head.get("onlinepg") != "manifest" or head.get("version") != 1
            or head.get("kind") not in KINDS):
        return None
    entries = []
    for line in lines[1:]:
        try:
            e = json.loads(line)
        except ValueError:
            return None
        keys = [k for k in ("f", "d", "c") if isinstance(e, dict) and k in e]
        if len(keys) != 1 or not _safe_rel(e[keys[0]]):
            return None
        entries.append(e)
    return head["kind"], entries


def listed_files(folder):
    """{path: its last manifest line} of every file ``folder``'s manifest lists ({} without a valid one)."""
    manifest = read_manifest(folder)
    return _last_files(manifest[1]) if manifest else {}


def _last_files(entries):
    return {e["f"]: e for e in entries if "f" in e}


def temporary_of(rel):
    """The path ``rel`` an atomic write's temporary ``…/.NAME.tmp`` belongs to (``…/NAME``), or None."""
    head, _, name = rel.rpartition("/")
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    return f"{head}/{name[1:-4]}" if head else name[1:-4]


def _ident(entry):
    """(key, path) of a manifest line: key "f" (file), "d" (folder) or "c" (nested claim)."""
    key = next(k for k in ("f", "d", "c") if k in entry)
    return key, entry[key]


def _header(kind):
    return json.dumps({"onlinepg": "manifest", "version": 1, "kind": kind}) + "\n"


def _append(folder, entries):
    """Append manifest lines to ``folder``'s manifest (one write: lines from several processes never mix)."""
    if not entries:
        return
    data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode()
    fd = os.open(os.path.join(folder, MANIFEST), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _ancestors(path):
    """The folders strictly above ``path`` (absolute), nearest first."""
    p = os.path.dirname(path)
    while True:
        yield p
        up = os.path.dirname(p)
        if up == p:
            return
        p = up


def _active_claim(path):
    """The claim of this process whose folder holds ``path`` (absolute), or None."""
    return next((_ACTIVE[p] for p in _ancestors(path) if p in _ACTIVE), None)


def _nearest_owner(path):
    """(folder, manifest entries) of the nearest folder strictly above ``path`` (absolute) with a valid
    manifest, or (None, None)."""
    for p in _ancestors(path):
        manifest = read_manifest(p)
        if manifest is not None:
            return p, manifest[1]
    return None, None


def _note(path, key, **meta):
    """List ``path`` (absolute) as ``key`` ("f" or "c") in the manifest of the claim of this process that holds
    it, else of the nearest folder above with a manifest (written by another process), else nowhere."""
    claim = _active_claim(path)
    if claim is not None:
        claim.note(path, key, **meta)
        return
    owner, _ = _nearest_owner(path)
    if owner is not None:
        rel = os.path.relpath(path, owner)
        _append(owner, _dirs_between(owner, rel) + [{key: rel, **meta}])


def _dirs_between(root, rel):
    """The folders between ``root`` and ``root/rel`` (exclusive) as manifest entries."""
    parts = rel.split("/")[:-1]
    return [{"d": "/".join(parts[:i + 1])} for i in range(len(parts))]


def record(path, **meta):
    """Note that the tool is about to write the file ``path``: in the manifest of the claim of this process
    that holds it, else of the nearest folder above with a manifest (a figure or an LQ table written into a
    run folder), else nowhere (a weights file a user saves anywhere). Call it before the write: a kill between
    the two leaves a listed file that does not exist, never a file that is not listed."""
    _note(os.path.abspath(path), "f", **meta)


def makedirs(path):
    """``path.mkdir(parents=True, exist_ok=True)``, the folders recorded first (see ``record``)."""
    path = pathlib.Path(path)
    if path.is_dir():
        return path
    absolute = os.path.abspath(path)
    claim = _active_claim(absolute)
    if claim is not None:
        claim.note(absolute, "d")
    path.mkdir(parents=True, exist_ok=True)
    return path


def may_replace(path, option):
    """Refuse (ConfigError) to write ``path`` outside a claimed folder when a file is there that onlinepg did
    not write (no manifest above it lists it); otherwise record it. For the default outputs that go beside
    their input (``onlinepg lq``'s lq.parquet)."""
    path = os.path.abspath(path)
    if os.path.lexists(path):
        owner, entries = _nearest_owner(path)
        if owner is None or os.path.relpath(path, owner) not in _last_files(entries):
            raise ConfigError(f"{option}: {path} exists and onlinepg did not write it; refusing to replace it "
                              "(move it away, or pass --out DIR)")
    record(path)


def _busy(lock):
    """True if another process holds the lock file ``lock`` (a missing or unreadable one is held by nobody)."""
    import fcntl
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


class _Inventory:
    """What a claimed folder holds against what its manifests list: the removable paths (files first, folders
    deepest first), the first few things nobody listed, the nested claims' lock files."""

    def __init__(self, root, kind):
        self.root = os.path.abspath(root)
        self.files, self.dirs, self.claims = set(), set(), {""}
        self.foreign, self.count_foreign = [], 0
        self.why = None
        manifest = read_manifest(self.root)
        if manifest is None:
            self.why = f"no valid {MANIFEST}"
            return
        if manifest[0] != kind:
            self.why = f"it holds {_article(manifest[0])} {manifest[0]}"
            return
        self._merge("", manifest[1], 0)
        self.removable = []
        self._walk("")

    def _merge(self, prefix, entries, depth):
        for e in entries:
            key, rel = _ident(e)
            rel = prefix + rel
            if key == "f":
                self.files.add(rel)
            else:
                self.dirs.add(rel)
            if key == "c" and rel not in self.claims and depth < MAX_NESTING:
                sub = read_manifest(os.path.join(self.root, rel))
                if sub is not None:
                    self.claims.add(rel)
                    self._merge(rel + "/", sub[1], depth + 1)

    def _listed_file(self, rel):
        return rel in self.files or temporary_of(rel) in self.files

    def _walk(self, rel):
        folder = os.path.join(self.root, rel) if rel else self.root
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        markers = []
        for e in entries:
            sub = f"{rel}/{e.name}" if rel else e.name
            if rel in self.claims and e.name in (LOCK, MANIFEST):
                if rel:             # a nested claim's own marker files go last: its manifest outlives its files
                    markers.append(sub)
                continue
            mode = e.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode) and sub in self.dirs:
                self._walk(sub)
                self.removable.append(sub + "/")
            elif stat.S_ISREG(mode) and self._listed_file(sub):
                self.removable.append(sub)
            else:
                self.count_foreign += 1
                if len(self.foreign) < 3:
                    self.foreign.append(sub + ("/" if stat.S_ISDIR(mode) else
                                               " (a symbolic link)" if stat.S_ISLNK(mode) else ""))
        self.removable += sorted(markers, key=lambda m: m.endswith(MANIFEST))


class OutDir:
    """``with OutDir(out, "run", overwrite=..., resume=...) as d:`` — the folder claimed for this process.

    On entry: the path is checked, the folder's state checked against the mode (fresh: empty; overwrite: its
    manifests account for everything in it; resume: anything, the caller checks what it needs), the folder
    created if missing and noted in the manifest of a claimed folder it lies in, and the lock taken (then the
    state checked again). ``d.replace()`` empties it of what the manifests list (keeping the lock), writes
    the new manifest and marks it as ``kind``: call it once the new command is known to start. An exception
    before ``replace`` undoes what entry created. ``d.note`` / ``record`` list what the command writes.
    """

    def __init__(self, out, kind, *, overwrite=False, resume=False, option="--out"):
        flags(overwrite, resume)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.path = check_path(out, option)
        self.abs = os.path.abspath(self.path)
        self.kind, self.overwrite, self.resume, self.option = kind, overwrite, resume, option
        self._fd = None
        self._created = []          # folders this claim created (outermost first)
        self._created_lock = False
        self._noted = {}            # (key, path) → the last manifest line written for it
        self._inventory = None
        self._listed = set()        # resume: the files the folder's manifest lists and this command wrote (only those
        self._keep_manifest = False  # are replaced); True when resuming a folder that has a valid manifest
        self.committed = False

    def __enter__(self):
        import fcntl
        if _busy(self.path / LOCK):
            raise self._busy_error()
        self._check()               # before anything is created: a refused command touches nothing
        try:
            missing = []
            p = self.path
            while not p.exists():
                missing.append(p)
                p = p.parent
            self._created = list(reversed(missing))
            self._note_in_owner()
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
            self._undo()
            raise self._busy_error() from None
        try:
            self._check()           # again under the lock: the folder may have changed meanwhile
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _busy_error(self):
        return ConfigError(f"{self.option}: another onlinepg process is writing to {self.path} (it holds {LOCK}); "
                           "wait for it to finish or choose another folder")

    def _note_in_owner(self):
        """A folder claimed inside a claimed folder (an experiment's run, a sweep's cell, a run's figures) is
        listed there as a nested claim before it is created, so replacing the outer folder removes it too."""
        _note(self.abs, "c")

    def _check(self):
        try:
            names = [n for n in os.listdir(self.path) if n != LOCK] if self.path.is_dir() else []
        except OSError as exc:
            raise ConfigError(f"{self.option}: cannot read {self.path}: {exc.strerror or exc}") from None
        if self.resume:
            if not names:
                return
            manifest = read_manifest(self.abs)
            if manifest is None:
                raise ConfigError(f"--resume: {self.path} has no valid {self.kind} manifest ({MANIFEST}: not written "
                                  "by onlinepg, by an older version, or damaged), so what it holds cannot be "
                                  "checked; start it afresh in another --out")
            if manifest[0] != self.kind:
                raise ConfigError(f"--resume: {self.path} is {_article(manifest[0])} {manifest[0]} folder, not "
                                  f"{_article(self.kind)} {self.kind} folder")
            self._listed, self._keep_manifest = set(_last_files(manifest[1])), True
            return
        if not names:
            return
        if not self.overwrite:
            extra = " or --resume to continue it" if self.kind in ("run", "sweep", "experiment") else ""
            raise ConfigError(f"{self.option}: folder {self.path} is not empty; pass --overwrite (overwrite=True) "
                              f"to replace it{extra}")
        refuse = f"--overwrite: {self.path} is not {_article(self.kind)} {self.kind} folder written by onlinepg"
        guarded = self._guarded()
        if guarded:
            raise ConfigError(f"--overwrite: {self.path} is {guarded}; onlinepg never replaces it (choose a "
                              "folder of its own with --out)")
        try:
            inv = _Inventory(self.path, self.kind)
        except OSError as exc:
            raise ConfigError(f"{refuse} that it can read ({exc.strerror or exc}: {exc.filename}); refusing to "
                              "delete it") from None
        if inv.why:
            raise ConfigError(f"{refuse} ({inv.why}); refusing to delete it (remove it yourself or choose another "
                              "--out)")
        if inv.count_foreign:
            more = f" and {inv.count_foreign - len(inv.foreign)} more" if inv.count_foreign > len(inv.foreign) else ""
            raise ConfigError(f"--overwrite: {self.path} holds what onlinepg did not write ({', '.join(inv.foreign)}"
                              f"{more}); refusing to delete anything (move those away or choose another --out)")
        self._check_removable(inv)
        self._inventory = inv

    def _guarded(self):
        """'the root folder', 'your home folder', 'the current folder' (or a folder that holds it), or ''."""
        real = os.path.realpath(self.path)
        cwd = os.path.realpath(os.getcwd())
        if real == "/":
            return "the root folder"
        if real == os.path.realpath(os.path.expanduser("~")):
            return "your home folder"
        if cwd == real or cwd.startswith(real + "/"):
            return "the current folder" if cwd == real else f"a folder holding the current folder {cwd}"
        return ""

    def _check_removable(self, inv):
        """Every path to remove must be removable (its folder writable), and no nested claim may be in use: a
        refusal here still leaves everything in place."""
        for rel in inv.removable:
            parent = os.path.dirname(os.path.join(inv.root, rel.rstrip("/")))
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"--overwrite: cannot remove {os.path.join(self.path, rel)}: its folder is not "
                                  "writable (permission denied); nothing was removed")
        for rel in sorted(inv.claims - {""}):
            if _busy(os.path.join(inv.root, rel, LOCK)):
                raise ConfigError(f"--overwrite: another onlinepg process is writing to {os.path.join(self.path, rel)}"
                                  "; wait for it to finish; nothing was removed")

    def note(self, path, key, **meta):
        """List ``path`` (absolute, inside this folder) in the manifest as a file ("f"), folder ("d") or nested
        claim ("c"), with the folders between; the same entry is written once."""
        rel = os.path.relpath(path, self.abs)
        if key == "f" and self.resume and rel not in self._listed and os.path.lexists(path):
            raise ConfigError(f"--resume: {path} exists and onlinepg did not write it; refusing to replace it "
                              "(move it away and resume again)")
        if key == "f":
            self._listed.add(rel)       # written by this command: it may write it again
        new = {}
        for e in _dirs_between(self.abs, rel) + [{key: rel, **meta}]:
            text = json.dumps(e, sort_keys=True)
            if self._noted.get(_ident(e)) != text:      # the last line for a path is the one that counts
                new[_ident(e)] = (e, text)
        if not new:
            return
        if not self.committed:
            raise RuntimeError(f"{path}: written into {self.path} before OutDir.replace()")
        _append(self.abs, [e for e, _ in new.values()])
        self._noted.update({ident: text for ident, (_, text) in new.items()})

    def replace(self):
        """Remove what the manifests list when overwriting (the lock stays), start this command's manifest
        (a fresh one, or the one a resumed folder has), mark the folder as ``kind`` and commit the claim."""
        if self.overwrite and self._inventory is not None:
            for rel in self._inventory.removable:
                p = os.path.join(self._inventory.root, rel.rstrip("/"))
                try:
                    os.rmdir(p) if rel.endswith("/") else os.unlink(p)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise ConfigError(f"--overwrite: cannot remove {p}: {exc.strerror or exc}; the files listed "
                                      f"in {MANIFEST} that remain are still onlinepg's: fix that and run again "
                                      "with --overwrite") from None
        if not self._keep_manifest:
            write_bytes(self.path / MANIFEST, _header(self.kind).encode(), record_it=False)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"onlinepg {self.kind}\n".encode(), 0)
        self.committed = True
        _ACTIVE[self.abs] = self
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
        if _ACTIVE.get(self.abs) is self:
            del _ACTIVE[self.abs]
        if not self.committed:
            self._undo()
        if self._fd is not None:
            os.close(self._fd)          # releases the flock
            self._fd = None
        return False


def write_bytes(path, data, record_it=True):
    """Write ``data`` to ``path`` atomically: recorded (``record``), a temporary file in the same folder, fsync,
    rename."""
    path = pathlib.Path(path)
    if record_it:
        record(path)
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
