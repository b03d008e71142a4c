"""Policy weights on disk: a small ``.npz`` with the weights and the feature map that reads them.

Format (all arrays): ``w`` float64[D]; ``kind`` str ('bigram' | 'cells'); ``k``, ``N``, ``d``, ``M`` int;
``normalize`` bool; ``transition`` bool (absent in older files: true); optional ``round`` int (the run round the weights belong to). Run checkpoints use the
same format plus the optimiser state and counters, so ``load_policy`` reads them too.
"""
import os
import pathlib
import zipfile
import zlib

import numpy as np

from .errors import ConfigError
from .features import FeatureSpec
from .policy import Policy


def policy_arrays(policy):
    f = policy.features
    if f.kind == "custom":
        raise ConfigError("custom feature maps cannot be saved (their phi is code, not data)")
    return {"w": policy.w, "kind": np.array(f.kind), "k": np.array(f.k), "N": np.array(f.N),
            "d": np.array(f.d), "M": np.array(f.M), "normalize": np.array(f.normalize),
            "transition": np.array(f.transition)}


def save_npz(path, arrays):
    """Write ``arrays`` atomically (temporary file, then rename), listed first in the manifest of the folder it
    goes into (``outdir.record``)."""
    from .outdir import record
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    record(path)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def save_policy(policy, path, **extra):
    save_npz(path, {**policy_arrays(policy), **{k: np.asarray(v) for k, v in extra.items()}})


def load_policy(path):
    """A ``Policy`` from a weights file or run checkpoint (see module docstring)."""
    try:
        with np.load(path) as z:
            spec = FeatureSpec(str(z["kind"]), int(z["k"]), int(z["N"]), d=int(z["d"]), M=int(z["M"]),
                               normalize=bool(z["normalize"]),
                               transition=bool(z["transition"]) if "transition" in z.files else True)
            return Policy(spec, z["w"])
    except FileNotFoundError:
        raise ConfigError(f"weights file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"weights file {path} is a directory; expected a .npz file") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(f"{path} is not an onlinepg weights file ({why})") from None
