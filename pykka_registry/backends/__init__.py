"""Registry backends: one module each.

* :mod:`~pykka_registry.backends.base` - the :class:`Backend` behaviour.
* :mod:`~pykka_registry.backends.memory` - :class:`MemoryBackend`, plain dicts.
* :mod:`~pykka_registry.backends.indexed` - :class:`IndexedBackend`, dicts plus
  an inverted metadata index.
"""

from pykka_registry.backends.base import Backend, BackendContext, Entry, Member, validate_backend
from pykka_registry.backends.indexed import IndexedBackend
from pykka_registry.backends.memory import MemoryBackend

__all__ = [
    "Backend",
    "BackendContext",
    "Entry",
    "IndexedBackend",
    "Member",
    "MemoryBackend",
    "validate_backend",
]
