"""Atomic writes: a result file either exists whole or not at all.

Files get the permissions of an ordinary ``open()`` (0666 minus the umask), not the
0600 of ``mkstemp``, so that results on a shared file system stay readable.
JSON never holds NaN or Infinity (they are not JSON): ``write_json`` stores them as
``null`` and says why under the top-level key ``null_reasons``; ``read_json`` turns
those nulls back into NaN.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask():
    """The process umask (reading it means setting it; it is restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def interrupts_deferred():
    """Hold SIGINT and SIGTERM until the block is done (a set of files is written whole).

    A signal that arrives inside the block is acted on when the block exits, so an
    interrupted command still stops, just not between two of its output files.
    (Python-level handlers, not a thread signal mask: numpy's BLAS threads would
    receive a masked signal instead.)  Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    for signum in caught[:1]:
        handler = old[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)


def check_writable(path, option, folder):
    """Raise ValueError unless ``path`` (a file or a folder) can be written.

    Checked before any work, so that a long run never ends in "No such file or
    directory". Missing folders are fine if the nearest existing one is writable.
    """
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise ValueError(f"{option} {path}: a broken symbolic link")
    if p.exists() and p.is_dir() != folder:
        raise ValueError(f"{option} {path}: exists and is {'not ' if folder else ''}a folder")
    base = p if folder and p.exists() else p.parent
    while not base.exists():
        if base.is_symlink():
            raise ValueError(f"{option} {path}: {base} is a broken symbolic link")
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"{option} {path}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: folder {base} is not writable")


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")


def _finite(obj, key, nulls):
    """``obj`` with non-finite floats replaced by None; their dotted keys go to ``nulls``."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        nulls[key] = repr(obj)
        return None
    if isinstance(obj, dict):
        return {k: _finite(v, f"{key}.{k}" if key else str(k), nulls) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, f"{key}.{i}" if key else str(i), nulls) for i, v in enumerate(obj)]
    return obj


def write_json(path, obj):
    """Write ``obj`` as strict JSON: NaN/Infinity become null, explained in ``null_reasons``.

    A caller states why a value is missing with ``obj["null_reasons"][key]``; a
    non-finite value without a stated reason is recorded as ``"non-finite value (nan)"``.
    """
    nulls = {}
    clean = _finite(obj, "", nulls)
    if nulls:
        if not isinstance(clean, dict):
            raise ValueError(f"{path}: non-finite values {sorted(nulls)} outside a JSON object")
        given = dict(clean.get("null_reasons") or {})
        clean["null_reasons"] = {**{k: f"non-finite value ({v})" for k, v in nulls.items()}, **given}
    text = json.dumps(clean, indent=2, sort_keys=True, default=_default, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def read_json(path):
    """Read a ``write_json`` file; the nulls listed in ``null_reasons`` come back as NaN."""
    obj = json.loads(Path(path).read_text())
    if isinstance(obj, dict):
        for key in obj.get("null_reasons") or {}:
            *parents, last = key.split(".")
            node = obj
            try:
                for part in parents:
                    node = node[int(part)] if isinstance(node, list) else node[part]
                index = int(last) if isinstance(node, list) else last
                if node[index] is None:
                    node[index] = float("nan")
            except (KeyError, IndexError, TypeError, ValueError):
                continue  # a reason for a key the object does not have
    return obj


def check_yaml(path):
    """Raise ValueError naming the file, line and column of a YAML syntax error."""
    import yaml

    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise ValueError(f"YAML syntax error in {where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"YAML syntax error in {path}: {e}") from None


def write_csv(path, frame):
    """Write a pandas DataFrame atomically (no index)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_rows_csv(path, rows, fieldnames=None):
    """Write a list of dicts as CSV, atomically, without pandas (importing pandas costs
    each training job about 0.4 s). Columns: ``fieldnames``, or every key in the order
    first seen; a row without a column leaves it empty."""
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)


def write_npz(path, **arrays):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)
