// The observer page: polls /api/snapshot and /api/events every POLL_MS and
// renders them. Every piece of data goes into the DOM through textContent
// (or dataset/title), never parsed as markup: names and metadata render as text.
"use strict";

(function () {
  const POLL_MS = 500;
  const MAX_EVENTS_KEPT = 300;
  const PAGE = 200;
  const token = new URLSearchParams(window.location.search).get("token");
  const state = { query: "", namespace: "", offset: 0, eventsSince: 0, events: [],
                  eventNamespace: "", generation: 0, timer: null };

  function $(id) { return document.getElementById(id); }

  function plural(count, noun) {
    return text(count) + " " + noun + (count === 1 ? "" : "s");
  }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      if (props.cls) node.className = props.cls;
      if (props.text !== undefined && props.text !== null) node.textContent = String(props.text);
      if (props.title) node.title = String(props.title);
      if (props.data) {
        for (const key of Object.keys(props.data)) node.dataset[key] = String(props.data[key]);
      }
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function text(value) {
    if (value === null || value === undefined) return "\u2014";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "\u2014";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " m " + Math.floor(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " m";
  }

  function shortUrn(urn) { return urn ? urn.slice(-12) : "\u2014"; }

  async function getJson(path) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { headers: headers, cache: "no-store" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  // -- rendering ---------------------------------------------------------------------

  function renderRegistries(snapshot) {
    const cards = snapshot.registries.map(function (reg) {
      const lines = [el("h3", { text: reg.name })];
      if (reg.error) {
        lines.push(el("div", { cls: "unhealthy", text: reg.error }));
      } else {
        lines.push(el("div", {}, [
          el("span", { cls: reg.status, text: reg.status }),
          el("span", { cls: "kv", text: " \u00b7 " + reg.backend + " \u00b7 " +
            plural(reg.stats.names, "name") + " \u00b7 up " + duration(reg.uptime_s) }),
        ]));
        lines.push(el("div", { cls: "kv", text: "registered " + text(reg.stats.registrations_total) +
          " \u00b7 released " + text(reg.stats.unregistrations_total) + " \u00b7 deaths " +
          text(reg.stats.deaths_reaped_total) + " \u00b7 pending deaths " +
          text(reg.stats.pending_deaths) + " \u00b7 event queue " + text(reg.event_queue) }));
        for (const problem of reg.problems) lines.push(el("div", { cls: "degraded", text: problem }));
        // The backend's own reasons (Redis out of reach, a lapsed lease...).
        const health = reg.backend_health || {};
        if (Array.isArray(health.problems)) {
          for (const problem of health.problems) {
            lines.push(el("div", { cls: "degraded backend-problem", text: reg.backend + ": " + text(problem) }));
          }
        }
        const list = el("ul", { cls: "namespaces" }, reg.namespaces.map(function (ns) {
          let line = ns.namespace + ": " + plural(ns.names, "name");
          if (ns.groups !== null) {
            line += ", " + plural(ns.groups, "group") + " (" + plural(ns.members, "member") + ")";
          }
          return el("li", { text: line });
        }));
        lines.push(list);
      }
      return el("div", { cls: "card registry", data: { registry: reg.name } }, lines);
    });
    $("registries").replaceChildren.apply($("registries"), cards);
    const clusters = snapshot.clusters.map(function (cluster) {
      const rows = [el("h3", { text: cluster.name + " (" + plural(cluster.names, "name") + ", " +
        plural(cluster.groups, "group") + ", " + plural(cluster.members, "member") + ")" })];
      if (cluster.error) rows.push(el("div", { cls: "unhealthy", text: cluster.error }));
      if (cluster.skipped) {
        rows.push(el("div", { cls: "degraded", text: plural(cluster.skipped, "record") +
          " skipped (unreadable: see the observer's log)" }));
      }
      rows.push(el("ul", {}, cluster.nodes.map(function (node) {
        const state = node.lease_expired ? "lease expired" : (node.degraded ? "degraded" : "");
        const item = el("li", { cls: "cluster-node" + (state ? " degraded" : ""),
          data: { node: node.node, state: state || "healthy" },
          text: node.node + " \u00b7 " + text(node.host) + " pid " + text(node.pid) +
          " \u00b7 " + node.names + " names \u00b7 " + plural(node.members, "group member") +
          " in " + plural(node.groups, "group") + " \u00b7 lease age " + duration(node.lease_age_s) +
          (node.lease_ttl_s === null || node.lease_ttl_s === undefined ? "" :
            " of " + duration(node.lease_ttl_s)) + (state ? " \u00b7 " + state : "") });
        if (node.problems && node.problems.length) {
          item.appendChild(el("div", { cls: "node-problems", text: node.problems.join("; ") }));
        }
        return item;
      })));
      return el("div", { cls: "card cluster" }, rows);
    });
    $("clusters").replaceChildren.apply($("clusters"), clusters);
  }

  function updateNamespaceOptions(select, labels, current) {
    const wanted = [""].concat(labels);
    const have = Array.from(select.options).map(function (o) { return o.value; });
    if (have.join("\u0000") === wanted.join("\u0000")) return;
    const options = wanted.map(function (value) {
      const option = el("option", { text: value === "" ? "all namespaces" : value });
      option.value = value;
      return option;
    });
    select.replaceChildren.apply(select, options);
    select.value = wanted.indexOf(current) >= 0 ? current : "";
  }

  function renderNames(snapshot) {
    const names = snapshot.names;
    const rows = names.items.map(function (item) {
      const held = item.held_s !== null ? duration(item.held_s)
        : (item.lease_age_s !== null ? "lease " + duration(item.lease_age_s) : "\u2014");
      return el("tr", { cls: "name-row", data: { service: item.service } }, [
        el("td", { text: item.registry }),
        el("td", { cls: "c-namespace", text: item.namespace }),
        el("td", { cls: "c-service", text: item.service }),
        el("td", { text: text(item.actor_class) }),
        el("td", { cls: item.alive === false ? "dead" : "", text: item.alive === false ? "no" : "yes" }),
        el("td", { text: text(item.mailbox) }),
        el("td", { text: held, title: item.held_s === null ? "taken before the observer started" : "" }),
        el("td", { text: text(item.node) }),
        el("td", { cls: "meta c-metadata", text: JSON.stringify(item.metadata) }),
        el("td", { cls: "urn", text: shortUrn(item.urn), title: item.urn || "" }),
      ]);
    });
    const body = $("names").tBodies[0];
    body.replaceChildren.apply(body, rows);
    const last = Math.min(names.offset + names.items.length, names.total);
    $("names-count").textContent = names.total === 0 ? "(none)" :
      "(" + (names.offset + 1) + "\u2013" + last + " of " + names.total + ")";
    $("prev").disabled = names.offset === 0;
    $("next").disabled = last >= names.total;
    const labels = [];
    for (const reg of snapshot.registries) {
      for (const ns of reg.namespaces || []) if (labels.indexOf(ns.namespace) < 0) labels.push(ns.namespace);
    }
    labels.sort();
    updateNamespaceOptions($("namespace"), labels, state.namespace);
    updateNamespaceOptions($("event-namespace"), labels, state.eventNamespace);
  }

  function renderGroups(snapshot) {
    const section = $("groups-section");
    if (!snapshot.groups) { section.hidden = true; return; }
    section.hidden = false;
    const rows = snapshot.groups.items.map(function (group) {
      const members = group.members.map(function (m) {
        return (m.actor_class || "?") + " " + shortUrn(m.urn) + (m.alive === false ? " (dead)" : "") +
          (m.node ? " on " + m.node : "") + " mailbox " + text(m.mailbox) + " " +
          JSON.stringify(m.metadata);
      }).join("\n");
      return el("tr", { cls: "group-row" }, [
        el("td", { text: group.registry }), el("td", { text: group.namespace }),
        el("td", { text: group.group }), el("td", { text: group.count }),
        el("td", { cls: "meta", text: members }),
      ]);
    });
    const body = $("groups").tBodies[0];
    body.replaceChildren.apply(body, rows);
    $("groups-count").textContent = "(" + snapshot.groups.total + ")";
  }

  function renderSupervisor(sup) {
    let head = sup.name;
    const detail = sup.strategy === null ? " \u00b7 not answering" :
      " \u00b7 " + sup.strategy + " \u00b7 intensity " + sup.restarts_in_window + "/" +
      sup.max_restarts + " in " + sup.max_seconds + " s \u00b7 restarts " + sup.restarts_total +
      " \u00b7 mailbox " + text(sup.mailbox) + (sup.registry ? " \u00b7 registry " + sup.registry : "") +
      (sup.stale ? " \u00b7 (busy: last known)" : "");
    const children = sup.children.map(function (child) {
      const actor = child.actor;
      const parts = [
        el("span", { cls: "child-id mono", text: child.id }),
        el("span", { cls: "muted", text: " " + child.restart + " \u00b7 restarts " }),
        el("span", { cls: "child-restarts" + (child.restarts > 0 ? " restarted" : ""), text: child.restarts }),
        el("span", { cls: "muted", text: child.name ? " \u00b7 name " + child.name[0] + "/" + child.name[1] : "" }),
        el("span", { cls: actor && actor.alive ? "" : "dead", text: actor ?
          " \u00b7 " + text(actor.actor_class) + " " + shortUrn(actor.urn) + " \u00b7 mailbox " + text(actor.mailbox) :
          " \u00b7 down" }),
      ];
      if (child.supervisor) parts.push(el("ul", {}, [el("li", {}, [renderSupervisor(child.supervisor)])]));
      return el("li", { cls: "child", data: { childId: child.id } }, parts);
    });
    return el("div", { cls: "sup", data: { supervisor: sup.name } }, [
      el("div", { cls: "sup-head" }, [el("span", { text: head }), el("span", { cls: "muted", text: detail })]),
      el("ul", {}, children),
    ]);
  }

  function renderSupervisors(snapshot) {
    const trees = snapshot.supervisors.map(function (sup) { return el("li", {}, [renderSupervisor(sup)]); });
    const list = el("ul", { cls: "tree" }, trees);
    if (trees.length === 0) list.appendChild(el("li", { cls: "muted", text: "no supervisor running" }));
    $("supervisors").replaceChildren(list);
  }

  function renderEvents() {
    const wanted = state.eventNamespace;
    const items = state.events.filter(function (e) { return wanted === "" || e.namespace === wanted; })
      .map(function (e) {
        const when = new Date(e.time * 1000).toLocaleTimeString();
        const kind = e.crash ? "crashed" : e.type;
        const parts = [
          el("span", { cls: "ev-time", text: when }),
          el("span", { cls: "ev-type", text: kind }),
          el("span", { cls: "ev-key", text: e.registry + " \u00b7 " + e.namespace + " / " + e.key +
            (e.group ? " (group)" : "") }),
          el("span", { cls: "muted", text: " \u00b7 " + text(e.actor_class) + " " + shortUrn(e.urn) }),
        ];
        if (e.reason && !e.crash) parts.push(el("span", { cls: "muted", text: " \u00b7 " + e.reason }));
        if (e.exception) {
          parts.push(el("div", { cls: "ev-exception mono", text: e.exception.type + ": " + e.exception.message }));
        }
        return el("li", { cls: "event" + (e.crash ? " crash" : ""), data: { type: kind } }, parts);
      });
    $("events").replaceChildren.apply($("events"), items);
  }

  // -- polling ----------------------------------------------------------------------

  function snapshotPath() {
    const params = new URLSearchParams();
    if (state.query) params.set("q", state.query);
    if (state.namespace) params.set("namespace", state.namespace);
    params.set("offset", String(state.offset));
    params.set("limit", String(PAGE));
    return "/api/snapshot?" + params.toString();
  }

  async function refresh() {
    const generation = ++state.generation;
    try {
      const [snapshot, events] = await Promise.all([
        getJson(snapshotPath()),
        getJson("/api/events?since=" + state.eventsSince + "&limit=" + MAX_EVENTS_KEPT),
      ]);
      // Two requests may overlap (a filter changed mid-poll): keep each event once.
      const fresh = events.items.filter(function (e) { return e.seq > state.eventsSince; });
      if (fresh.length) state.events = fresh.concat(state.events).slice(0, MAX_EVENTS_KEPT);
      state.eventsSince = Math.max(state.eventsSince, events.latest);
      if (generation !== state.generation) return;  // a newer request (a new filter) wins
      renderRegistries(snapshot);
      renderNames(snapshot);
      renderGroups(snapshot);
      renderSupervisors(snapshot);
      renderEvents();
      $("status").textContent = "live";
      $("status").className = "status live";
      $("updated").textContent = "updated " + new Date(snapshot.time * 1000).toLocaleTimeString();
    } catch (error) {
      $("status").textContent = "disconnected";
      $("status").className = "status down";
    }
  }

  function schedule(delay) {
    if (state.timer !== null) window.clearTimeout(state.timer);
    state.timer = window.setTimeout(async function () {
      state.timer = null;
      await refresh();
      if (state.timer === null) schedule(POLL_MS);
    }, delay);
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("search").addEventListener("input", function (event) {
      state.query = event.target.value;
      state.offset = 0;
      schedule(0);
    });
    $("namespace").addEventListener("change", function (event) {
      state.namespace = event.target.value;
      state.offset = 0;
      schedule(0);
    });
    $("event-namespace").addEventListener("change", function (event) {
      state.eventNamespace = event.target.value;
      renderEvents();
    });
    $("prev").addEventListener("click", function () {
      state.offset = Math.max(0, state.offset - PAGE);
      schedule(0);
    });
    $("next").addEventListener("click", function () {
      state.offset += PAGE;
      schedule(0);
    });
    schedule(0);
  });
})();
