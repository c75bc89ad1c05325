"""Public names of a package that load on first use (PEP 562), so ``import enclave`` stays cheap.

``enclave --help`` imports ``enclave`` and the CLI; the stage packages pull in torch, LlamaIndex,
Prefect and the model clients (seconds of import time), which a command loads only when it needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(namespace: dict[str, Any],
                 modules: Mapping[str, Sequence[str]]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names live in its modules.

    Usage, in a package's ``__init__.py`` (the same names imported under ``if TYPE_CHECKING:`` for type
    checkers and the API reference)::

        __all__ = ["ChunkStore", "Retriever"]
        __getattr__, __dir__ = lazy_exports(globals(), {"enclave.indexes.chunk_store": ["ChunkStore"],
                                                        "enclave.indexes.retriever": ["Retriever"]})

    ``namespace`` is the package's ``globals()``; ``modules`` maps each module to the names it defines.
    A name is imported on first access and then kept in the namespace. An unknown name raises
    AttributeError, as for any module; a name missing from ``__all__`` (or from ``modules``), or listed
    under two modules, raises ValueError at once.
    """
    package = namespace["__name__"]
    exports = {name: module for module, names in modules.items() for name in names}
    if len(exports) != sum(len(names) for names in modules.values()):
        raise ValueError(f"{package}: a name is listed under two modules")
    unlisted = sorted(set(exports) ^ (set(namespace.get("__all__", ())) - {"__version__"}))
    if unlisted:
        raise ValueError(f"{package}: __all__ and the lazy exports differ in {', '.join(unlisted)}")

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
