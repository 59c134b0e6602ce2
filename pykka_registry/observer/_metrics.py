"""``/metrics``: the Prometheus text exposition format (version 0.0.4),
written by hand so that no client library is needed.

Guarantees
----------
* Every family has ``# HELP`` and ``# TYPE`` lines; names are snake_case
  with the ``pykka_registry_`` prefix; counters end in ``_total``; label
  values are escaped (backslash, double quote, newline) so any namespace or
  node name is safe. The output parses with ``prometheus_client.parser``.
* Label values are distinct for distinct keys (:class:`DistinctLabels`):
  namespace ``7`` is ``int:7``, ``"7"`` is ``7``, a second object with the
  same repr gets `` (2)``; registries sharing a name likewise.
* Bounded: per-namespace series cover at most
  :data:`MAX_METRIC_NAMESPACES` namespaces of a registry or Redis prefix
  (those with the most names); ``pykka_registry_namespaces`` and
  ``pykka_registry_namespaces_left_out`` count all and the rest.
* Values come from the same read-only sources as ``/api/snapshot``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from pykka_registry.observer._convert import label
from pykka_registry.observer._snapshot import Snapshotter

__all__ = ["METRICS", "render_metrics"]

#: name -> (type, help). The documented list (docs/observer.md).
METRICS: dict[str, tuple[str, str]] = {
    "pykka_registry_up": ("gauge", "1 while the registry is running and its server is alive."),
    "pykka_registry_degraded": ("gauge", "1 when the registry's health is not 'healthy'."),
    "pykka_registry_namespaces": ("gauge", "Namespaces with a name or a group member."),
    "pykka_registry_namespaces_left_out": (
        "gauge", "Namespaces beyond the per-namespace series' cap (the smallest)."),
    "pykka_registry_names": ("gauge", "Names held, per registry and namespace."),
    "pykka_registry_groups": ("gauge", "Groups with at least one member, per namespace."),
    "pykka_registry_group_members": ("gauge", "Group members, per registry and namespace."),
    "pykka_registry_registrations_total": ("counter", "Names registered since the start."),
    "pykka_registry_unregistrations_total": ("counter", "Names released since the start."),
    "pykka_registry_deaths_total": ("counter", "Actor deaths cleaned up since the start."),
    "pykka_registry_server_restarts_total": ("counter", "Restarts of the registry's server."),
    "pykka_registry_pending_deaths": ("gauge", "Death notices waiting for the server."),
    "pykka_registry_event_queue_depth": ("gauge", "Events queued, not yet delivered."),
    "pykka_registry_subscribers": ("gauge", "Event subscriptions (the observer's included)."),
    "pykka_registry_redis_lease_age_seconds": (
        "gauge", "Seconds since a Redis node last renewed its lease."),
    "pykka_registry_redis_degraded": (
        "gauge", "1 when a Redis node is degraded (its own health, or seen from outside)."),
    "pykka_registry_redis_lease_ttl_seconds": ("gauge", "A Redis node's lease TTL."),
    "pykka_registry_redis_lease_expired": (
        "gauge", "1 when a Redis node's lease is gone but its records are not yet reaped."),
    "pykka_registry_cluster_up": (
        "gauge", "1 when the last read of a Redis prefix (standalone view) succeeded."),
    "pykka_registry_cluster_records_skipped": (
        "gauge", "Records of a Redis prefix that the last read could not read."),
    "pykka_registry_cluster_scrape_errors_total": (
        "counter", "Reads of a Redis prefix that failed as a whole."),
    "pykka_registry_redis_node_names": ("gauge", "Names held by a Redis node (standalone view)."),
    "pykka_registry_redis_node_group_members": (
        "gauge", "Group members of a Redis node (standalone view)."),
    "pykka_registry_supervisor_restarts_total": (
        "counter", "Restarts made by a supervisor since it started."),
    "pykka_registry_supervisor_restarts_in_window": (
        "gauge", "Restarts within the supervisor's intensity window."),
    "pykka_registry_supervisor_max_restarts": ("gauge", "The supervisor's max_restarts."),
    "pykka_registry_supervisor_children": ("gauge", "Children of a supervisor."),
    "pykka_registry_observer_events_total": (
        "counter", "Registry events seen by the observer, per registry and type."),
}


#: Per-namespace series of one registry or Redis prefix: at most this many
#: (those with the most names), so that /metrics stays bounded.
MAX_METRIC_NAMESPACES = 10_000


class DistinctLabels:
    """Label values that stay distinct for distinct values whose text is
    the same: a ``str`` is itself, anything else ``type:repr`` (``7`` is
    ``int:7``, ``"7"`` is ``7``), and a text already given to another value
    gets `` (2)``, `` (3)``... in the order asked (the callers ask in a
    stable order, so a series keeps its label from one scrape to the next).
    """

    def __init__(self) -> None:
        self._used: dict[str, int] = {}

    def __call__(self, value: Any) -> str:
        text = value if type(value) is str else f"{_type_name(value)}:{label(value)}"
        text = label(text)  # cut
        count = self._used.get(text, 0) + 1
        self._used[text] = count
        if count == 1:
            return text
        while True:  # "x (2)" may itself be the text of another value
            candidate = f"{text} ({count})"
            if candidate not in self._used:
                self._used[candidate] = 1
                return candidate
            count += 1


def _type_name(value: Any) -> str:
    try:
        return str(type(value).__name__)[:80]
    except BaseException:
        return "object"


def escape_label(value: str) -> str:
    """A label value as the text format wants it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return None


class _Families:
    def __init__(self) -> None:
        self.samples: dict[str, list[str]] = {name: [] for name in METRICS}

    def add(self, name: str, value: Any, **labels: Any) -> None:
        text = _number(value)
        if text is None:
            return
        if labels:
            inner = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
            self.samples[name].append(f"{name}{{{inner}}} {text}")
        else:
            self.samples[name].append(f"{name} {text}")

    def render(self) -> str:
        lines = []
        for name, samples in self.samples.items():
            if not samples:
                continue
            kind, help_text = METRICS[name]
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def render_metrics(snapshotter: Snapshotter) -> str:
    """The metrics text for everything ``snapshotter`` watches."""
    out = _Families()
    registries = DistinctLabels()  # two registries may share a name
    for watch in list(snapshotter.watches):
        summary = snapshotter.registry_summary(watch, namespaces=False)
        reg = registries(summary["name"])
        if summary.get("error"):
            out.add("pykka_registry_up", 0, registry=reg)
            continue
        try:
            counted, total = snapshotter.namespace_counts(watch, MAX_METRIC_NAMESPACES)
        except Exception:
            out.add("pykka_registry_up", 0, registry=reg)
            continue
        out.add("pykka_registry_up", summary["server_alive"] and summary["status"] != "unhealthy",
                registry=reg)
        out.add("pykka_registry_degraded", summary["status"] != "healthy", registry=reg)
        out.add("pykka_registry_namespaces", total, registry=reg)
        out.add("pykka_registry_namespaces_left_out", total - len(counted), registry=reg)
        namespaces = DistinctLabels()
        for ns, names, groups, members in counted:
            ns_label = namespaces(ns)
            out.add("pykka_registry_names", names, registry=reg, namespace=ns_label)
            if groups is not None:
                out.add("pykka_registry_groups", groups, registry=reg, namespace=ns_label)
                out.add("pykka_registry_group_members", members, registry=reg,
                        namespace=ns_label)
        stats = summary["stats"]
        for metric, field in (
            ("pykka_registry_registrations_total", "registrations_total"),
            ("pykka_registry_unregistrations_total", "unregistrations_total"),
            ("pykka_registry_deaths_total", "deaths_reaped_total"),
            ("pykka_registry_server_restarts_total", "server_restarts"),
            ("pykka_registry_pending_deaths", "pending_deaths"),
        ):
            out.add(metric, stats.get(field), registry=reg)
        out.add("pykka_registry_event_queue_depth", summary["event_queue"], registry=reg)
        out.add("pykka_registry_subscribers", summary["subscribers"], registry=reg)
        health = summary["backend_health"]
        if isinstance(health, dict) and "lease_age_s" in health:
            node = str(health.get("node_id", ""))
            out.add("pykka_registry_redis_lease_age_seconds", health.get("lease_age_s"),
                    registry=reg, node=node)
            out.add("pykka_registry_redis_degraded", health.get("status") != "healthy",
                    registry=reg, node=node)
    for source in snapshotter.clusters:
        data = source.read()
        reg = registries(source.label)
        out.add("pykka_registry_cluster_up", data["error"] is None, registry=reg)
        out.add("pykka_registry_cluster_records_skipped", data["skipped"], registry=reg)
        out.add("pykka_registry_cluster_scrape_errors_total", source.scrape_errors, registry=reg)
        nodes = DistinctLabels()
        for node in data["nodes"]:
            labels = {"registry": reg, "node": nodes(node["node"])}
            out.add("pykka_registry_redis_lease_age_seconds", node["lease_age_s"], **labels)
            out.add("pykka_registry_redis_lease_ttl_seconds", node["lease_ttl_s"], **labels)
            out.add("pykka_registry_redis_lease_expired", node["lease_expired"], **labels)
            out.add("pykka_registry_redis_degraded", node["degraded"], **labels)
            out.add("pykka_registry_redis_node_names", node["names"], **labels)
            out.add("pykka_registry_redis_node_group_members", node["members"], **labels)
        _cluster_namespace_metrics(out, reg, data)
    _supervisor_metrics(out, snapshotter.supervisor_trees())
    for (reg, kind), count in sorted(snapshotter.log.counts_copy().items()):
        out.add("pykka_registry_observer_events_total", count, registry=reg, type=kind)
    return out.render()


def _supervisor_metrics(out: _Families, trees: list[dict[str, Any]]) -> None:
    seen: set[Any] = set()
    names: dict[str, int] = {}

    def visit(node: dict[str, Any]) -> None:
        if node["urn"] in seen:
            return
        seen.add(node["urn"])
        # Two supervisors may share a name: keep their label sets distinct.
        count = names[node["name"]] = names.get(node["name"], 0) + 1
        name = node["name"] if count == 1 else f"{node['name']} ({count})"
        labels = {"supervisor": name}
        out.add("pykka_registry_supervisor_restarts_total", node["restarts_total"], **labels)
        out.add("pykka_registry_supervisor_restarts_in_window", node["restarts_in_window"],
                **labels)
        out.add("pykka_registry_supervisor_max_restarts", node["max_restarts"], **labels)
        out.add("pykka_registry_supervisor_children", len(node["children"]), **labels)
        for child in node["children"]:
            if child["supervisor"] is not None:
                visit(child["supervisor"])

    for tree in trees:
        visit(tree)


def _key(value: Any) -> tuple[Any, ...]:
    """A dict key that tells apart values that are equal across types
    (``1``, ``True``, ``1.0``), and survives an unhashable value."""
    try:
        hash(value)
        return (type(value), value)
    except Exception:
        return (type(value), "repr", label(value))


def _cluster_namespace_metrics(out: _Families, registry: str, data: dict[str, Any]) -> None:
    """Names, groups and members per namespace of a Redis prefix, cluster-wide."""
    # namespace key -> [namespace, names, groups, members]
    per_ns: dict[tuple[Any, ...], list[Any]] = {}
    for row in data["rows"]:
        ns = row["namespace"]
        per_ns.setdefault(_key(ns), [ns, 0, 0, 0])[1] += 1
    for (ns, _group), group_members in data["groups"].items():
        slot = per_ns.setdefault(_key(ns), [ns, 0, 0, 0])
        slot[2] += 1
        slot[3] += len(group_members)
    found = list(per_ns.values())
    keyed = sorted((-slot[1], -slot[3], label(slot[0]), i) for i, slot in enumerate(found))
    kept = [found[i] for *_, i in keyed[:MAX_METRIC_NAMESPACES]]
    out.add("pykka_registry_namespaces", len(found), registry=registry)
    out.add("pykka_registry_namespaces_left_out", len(found) - len(kept), registry=registry)
    namespaces = DistinctLabels()
    for ns, names, groups, members in kept:
        ns_label = namespaces(ns)
        if names:
            out.add("pykka_registry_names", names, registry=registry, namespace=ns_label)
        if groups:
            out.add("pykka_registry_groups", groups, registry=registry, namespace=ns_label)
            out.add("pykka_registry_group_members", members, registry=registry,
                    namespace=ns_label)
