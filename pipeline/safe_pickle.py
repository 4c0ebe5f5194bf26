"""Load untrusted pickles (CSL-Daily's label file) without ever running pickled code.

Only plain containers, strings, numbers and numpy arrays are admitted. Any other global a
pickle names, such as ``os.system`` or ``builtins.eval``, is refused before it can be called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError

ALLOWED_GLOBALS = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a class or function outside the allow-list."""


class DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(f"refused to load {module}.{name}: only plain data is allowed")
        return super().find_class(module, name)


def load_data_pickle(path: Path) -> Any:
    """Unpickle ``path`` admitting only data; raises :class:`PrepError` with a one-line reason."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PrepError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return DataOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise PrepError(f"unsafe pickle {path.name}: {exc}") from exc
    except Exception as exc:  # truncated or not a pickle at all
        raise PrepError(
            f"cannot unpickle {path.name}: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
