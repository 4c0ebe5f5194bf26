"""The one place prep unpickles, and never runs pickled code doing it.

- :func:`load_data_pickle`: untrusted data pickles (CSL-Daily's label file). Only plain
  containers, strings, numbers and numpy arrays are admitted; any other global a pickle names,
  such as ``os.system`` or ``builtins.eval``, is refused before it can be called.
- :func:`load_checkpoint`: PyTorch checkpoints (e.g. Lightning's ``.ckpt``). A torch
  checkpoint is a zip: ``data.pkl`` describes the objects, ``data/<key>`` holds the tensor
  bytes. ``torch.load(weights_only=True)`` refuses files that also pickle configuration objects
  (HaMeR's ``hamer.ckpt`` carries a yacs ``CfgNode``), and ``weights_only=False`` would run
  whatever the pickle names. Here an unpickler rebuilds tensors and plain containers and turns
  every other class into an inert :class:`Placeholder`: nothing named in the file is imported
  or called.
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError

CONTAINERS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
}
TENSOR_REBUILDERS = {"_rebuild_tensor_v2", "_rebuild_parameter"}


class Placeholder:
    """Stands in for any class a checkpoint names that is not a tensor or a container.

    It accepts whatever the pickle passes (constructor arguments, state, items) and keeps
    only the class name, so a config object or a code-executing payload is inert data.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


def placeholder_for(module: str, name: str) -> type:
    return type(f"Placeholder[{module}.{name}]", (Placeholder,), {"source": f"{module}.{name}"})


class TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.archive, self.prefix = archive, prefix
        self.placeholders: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        import torch

        if (module, name) in CONTAINERS:
            return super().find_class(module, name)
        if module == "torch._utils" and name in TENSOR_REBUILDERS:
            return getattr(torch._utils, name)
        if module == "torch" and (
            name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype)
        ):
            return getattr(torch, name)
        if module == "torch" and name == "Size":
            return torch.Size
        self.placeholders.add(f"{module}.{name}")
        return placeholder_for(module, name)

    def persistent_load(self, pid: Any) -> Any:
        import torch

        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.60}")
        _, storage_type, key, _location, _numel = pid
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        untyped = (
            torch.frombuffer(raw, dtype=torch.uint8).untyped_storage()
            if raw
            else torch.UntypedStorage(0)
        )
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def load_checkpoint(path: Path) -> Any:
    """The checkpoint's object tree, tensors rebuilt, everything else inert; one-line errors."""
    if not path.is_file():
        raise PrepError(f"checkpoint not found: {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise PrepError(
            f"{path.name} is not a PyTorch zip checkpoint (legacy or damaged file)"
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise PrepError(f"{path.name} is not a PyTorch checkpoint (no data.pkl)")
        prefix = pickles[0][: -len("/data.pkl")]
        byteorder = f"{prefix}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise PrepError(
                f"{path.name} was written on a big-endian machine; convert it there first"
            )
        try:
            with (
                warnings.catch_warnings()
            ):  # torch's TypedStorage notice; storages are only a carrier here
                warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
                return TensorOnlyUnpickler(archive.read(pickles[0]), archive, prefix).load()
        except (
            pickle.UnpicklingError,
            KeyError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
        ) as exc:
            raise PrepError(
                f"cannot read checkpoint {path.name}: {type(exc).__name__}: {exc}".splitlines()[0]
            ) from exc


# -- data pickles ------------------------------------------------------------------------
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
