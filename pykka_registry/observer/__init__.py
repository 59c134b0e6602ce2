"""The observer: a live web page, a JSON API and Prometheus metrics for
registries, names, groups, supervision trees and mailboxes.

Start one with :meth:`Registry.observe <pykka_registry.Registry.observe>` or
:func:`serve`; see docs/observer.md. Nothing here runs, and no registry pays
anything for it, until one is started.
"""

from pykka_registry.observer._metrics import METRICS
from pykka_registry.observer._server import Observer, serve

__all__ = ["METRICS", "Observer", "serve"]
