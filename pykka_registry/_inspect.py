"""``python -m pykka_registry ls``: list every name held through a Redis server.

Usage::

    python -m pykka_registry ls --redis URL [--prefix P] [--namespace NS] [--json]

Reads Redis only (it starts no node and takes no lease). A name is listed if
its node's lease is alive, which is exactly when other processes can see it.
``--namespace`` takes a plain string; a JSON integer or array selects an int
or tuple namespace (``--namespace 7``, ``--namespace '["test", "x"]'``).

Table columns: namespace, service, node, actor class, metadata, lease age
(seconds since the node last renewed its lease). ``--json`` prints one JSON
array of objects with the keys ``namespace``, ``service``, ``node``,
``actor_class``, ``metadata``, ``lease_age_s``; tuple keys appear as arrays.

A record this version cannot read (a stray key, another version's format)
is skipped with a warning on stderr naming its key; the others are listed.

Exit status: 0 on success, 1 when Redis cannot be read, 2 on bad usage.

Guarantees
----------
* Reads only: no key is written, no lease taken.
* The key layout and the record format are the backend's own
  (:mod:`pykka_registry.backends.redis._schema`: ``Layout``,
  ``parse_record``), so ``ls`` lists exactly the names other processes see;
  it uses no private helper of the backend.
* A record that cannot be read is skipped alone, never fatal.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable, Optional, TextIO

__all__ = ["format_table", "list_names", "main", "parse_namespace"]

logger = logging.getLogger("pykka_registry.redis")

def parse_namespace(text: str) -> Any:
    """A ``--namespace`` value: JSON for an int or a tuple, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        return text
    from pykka_registry.backends.redis._schema import tuples

    return tuples(value)


def list_names(client: Any, prefix: str, namespace: Any = None,
               warn: Optional[Callable[[str], None]] = None) -> list[dict[str, Any]]:
    """Every live name under ``prefix`` (optionally of one ``namespace``), as
    dicts with the ``--json`` keys, sorted by namespace and service.

    A record that cannot be read is skipped and reported to ``warn`` (default:
    a warning on the ``pykka_registry.redis`` logger)."""
    from pykka_registry.backends.redis._schema import ROW_FIELDS, Layout, as_text, parse_record

    layout = Layout(prefix)
    report = warn or (lambda message: logger.warning("%s", message))
    name_keys = sorted(client.smembers(layout.names))
    pipe = client.pipeline(transaction=False)
    for name_key in name_keys:
        pipe.hmget(name_key, *ROW_FIELDS)
    records = []
    for name_key, row in zip(name_keys, pipe.execute(raise_on_error=False)):
        where = as_text(name_key)
        if isinstance(row, Exception):
            report(f"skipped {where!r}: {row}")
            continue
        if row[0] is None:
            continue  # deleted meanwhile
        try:
            record = parse_record(dict(zip(ROW_FIELDS, row)))
        except (ValueError, TypeError, UnicodeDecodeError) as error:
            report(f"skipped the malformed record {where!r}: {error}")
            continue
        if where != layout.name(record.kjson):
            report(f"skipped {where!r}: its name {record.kjson!r} belongs under another key")
            continue
        records.append(record)
    nodes = sorted({r.node for r in records})
    pipe = client.pipeline(transaction=False)
    for node in nodes:
        pipe.get(layout.node(node))
        pipe.pttl(layout.node(node))
        pipe.get(layout.nodeinfo(node))
    answers = pipe.execute()
    leases: dict[str, tuple[str, Optional[float]]] = {}
    for i, node in enumerate(nodes):
        inc, pttl, info = as_text(answers[3 * i]), answers[3 * i + 1], answers[3 * i + 2]
        age: Optional[float] = None
        try:
            ttl_ms = int(json.loads(info)["ttl_ms"]) if info else None
        except (ValueError, KeyError, TypeError, OverflowError):
            ttl_ms = None  # not an info record this tool understands: no age
        if ttl_ms is not None and isinstance(pttl, int) and pttl >= 0:
            age = round(max(0, int(ttl_ms) - pttl) / 1000, 3)
        leases[node] = (inc, age)
    rows = []
    for record in records:
        inc, age = leases.get(record.node, ("", None))
        if not inc or inc != record.inc:
            continue  # the node's lease lapsed: the name is free
        ns, service = record.key
        if namespace is not None and ns != namespace:
            continue
        rows.append({
            "namespace": ns,
            "service": service,
            "node": record.node,
            "actor_class": record.actor_class,
            "metadata": record.metadata,
            "lease_age_s": age,
        })
    rows.sort(key=lambda r: (json.dumps(r["namespace"]), json.dumps(r["service"])))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    headers = ("NAMESPACE", "SERVICE", "NODE", "ACTOR CLASS", "METADATA", "LEASE AGE")
    cells = [
        (
            _cell(r["namespace"]), _cell(r["service"]), r["node"], r["actor_class"],
            _cell(r["metadata"]),
            "-" if r["lease_age_s"] is None else f"{r['lease_age_s']:.1f}s",
        )
        for r in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None, out: Optional[TextIO] = None) -> int:
    """Run ``ls`` with the arguments after ``ls`` (a leading ``"ls"`` is ignored)."""
    from pykka_registry.cli._common import Parser
    from pykka_registry.cli._ls import add_arguments, run

    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["ls"]:
        args_list = args_list[1:]
    parser = Parser(
        prog="python -m pykka_registry ls",
        description="List every name held through a Redis server.",
    )
    add_arguments(parser)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return run(args, out)
