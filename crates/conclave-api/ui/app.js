// conclave's dashboard: plain JavaScript over the agent's own HTTP API (the same calls the
// CLI makes), embedded in the binary. No framework, no build step, no third-party code.
"use strict";

const TOKEN_KEY = "conclave-token";
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  access: { cluster: "admin", audit: "read", acl: false, label: "" },
  samples: [],
  lastSample: 0,
  timer: null,
  page: "",
};

// ---- HTTP -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "";
    this.hint = e.hint || "";
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch (_) { body = null; }
  }
  if (response.status === 401) {
    showLogin("This cluster requires an ACL token" + (state.token ? ": the one given was refused." : "."));
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// ---- small helpers ------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    // Through the CSSOM: the content security policy refuses style attributes.
    else if (k === "style") Object.assign(node.style, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/// Replace `page`'s content with `children`, skipping the absent ones.
function show(page, ...children) {
  page.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const badge = (text, kind = "") => el("span", { class: `badge ${kind}` }, text);
const card = (label, value, id, sub) => el("div", { class: "card", id },
  el("div", { class: "label" }, label), el("div", { class: "value" }, value),
  sub ? el("div", { class: "sub" }, sub) : null);
const fmtNum = (n, digits = 1) => (n === null || n === undefined ? "–" : Number(n).toFixed(digits));
const fmtMs = (ms) => (ms === null || ms === undefined ? "–" : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);

function table(headers, rows, id) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none"))]));
}

function toast(message, bad = false) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = bad ? "bad" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function problem(err) {
  return el("p", { class: "error" }, `${err.message}${err.hint ? ` — ${err.hint}` : ""}`);
}

// ---- access: what the token may do ------------------------------------------------------------

const LEVELS = { none: 0, read: 1, write: 2, admin: 3 };

async function loadAccess() {
  const who = document.getElementById("who-text");
  const button = document.getElementById("login-button");
  if (!state.token) {
    state.access = { cluster: "admin", audit: "read", acl: false, label: "" };
    who.textContent = "";
    button.textContent = "Log in";
    return;
  }
  try {
    const self = await api("/v1/acl/token/self");
    const best = (resource) => {
      let level = "none";
      for (const p of self.policies) for (const r of p.rules) {
        if (r.resource === resource && LEVELS[r.access] > LEVELS[level]) level = r.access;
      }
      return level;
    };
    state.access = { cluster: best("cluster"), audit: best("audit"), acl: true,
      label: self.token.description || self.token.accessor_id };
    who.textContent = `token: ${state.access.label} (cluster:${state.access.cluster})`;
    button.textContent = "Log out";
  } catch (err) {
    if (err.status === 400) {
      // ACLs are off: the token is not needed.
      state.access = { cluster: "admin", audit: "read", acl: false, label: "" };
      who.textContent = "ACLs are off";
      button.textContent = "Log out";
    } else {
      throw err;
    }
  }
}

function can(resource, level) {
  return LEVELS[state.access[resource] || "none"] >= LEVELS[level];
}

/// A button for an action needing `resource:level`: disabled, with what is missing, when the
/// token lacks it.
function actionButton(label, resource, level, onclick, attrs = {}) {
  const allowed = can(resource, level);
  const title = allowed ? attrs.title : `needs ${resource}:${level}; your token has ${resource}:${state.access[resource] || "none"}`;
  return el("button", Object.assign({}, attrs, { type: "button", title, disabled: !allowed, onclick }), label);
}

function missing(resource, level) {
  return can(resource, level) ? null
    : el("p", { class: "needs" }, `Actions need ${resource}:${level}; your token has ${resource}:${state.access[resource] || "none"}.`);
}

// ---- login ------------------------------------------------------------------------------

function showLogin(why) {
  const dialog = document.getElementById("login");
  document.getElementById("login-why").textContent = why;
  if (!dialog.open) dialog.showModal();
}

function setupLogin() {
  const dialog = document.getElementById("login");
  document.getElementById("login-button").addEventListener("click", () => {
    if (state.token) {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      loadAccess().then(route, report);
    } else {
      showLogin("Give an ACL token (its secret ID). It stays in this browser tab only.");
    }
  });
  document.getElementById("login-cancel").addEventListener("click", () => dialog.close());
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("login-error");
    state.token = document.getElementById("login-token").value.trim();
    try {
      await loadAccess();
      sessionStorage.setItem(TOKEN_KEY, state.token);
      error.hidden = true;
      document.getElementById("login-token").value = "";
      dialog.close();
      route();
    } catch (err) {
      state.token = "";
      error.textContent = err.message;
      error.hidden = false;
    }
  });
}

// ---- confirmations: preview with ?dry_run=true, then do it ---------------------------------------

/// Ask the server what `path` would do (`?dry_run=true`), show it, and make the change on
/// confirmation. `force` is offered when the server refuses for lack of a quorum.
function confirmChange(title, path, body, forceable, method = "POST") {
  const dialog = document.getElementById("confirm");
  const effect = document.getElementById("confirm-effect");
  const refusal = document.getElementById("confirm-refusal");
  const hint = document.getElementById("confirm-hint");
  const forceLabel = document.getElementById("confirm-force-label");
  const force = document.getElementById("confirm-force");
  const ok = document.getElementById("confirm-ok");
  document.getElementById("confirm-title").textContent = title;
  force.checked = false;
  forceLabel.hidden = true;
  const withQuery = (extra) => path + (path.includes("?") ? "&" : "?") + extra + (force.checked ? "&force=true" : "");
  const preview = async () => {
    ok.disabled = true;
    effect.textContent = "Asking the leader what this would do…";
    refusal.hidden = true;
    hint.hidden = true;
    try {
      const p = await api(withQuery("dry_run=true"), { method, body });
      effect.textContent = p.effect || (p.removed ? `Would remove: ${p.removed.join(", ") || "nothing (no dead or left member)"}` : "");
      ok.disabled = false;
    } catch (err) {
      effect.textContent = "The server would refuse this change:";
      refusal.textContent = err.message;
      refusal.hidden = false;
      if (err.hint) { hint.textContent = err.hint; hint.hidden = false; }
      if (forceable && err.code === "unsafe_membership_change" && /quorum/.test(err.message)) forceLabel.hidden = false;
    }
  };
  force.onchange = preview;
  document.getElementById("confirm-cancel").onclick = () => dialog.close();
  ok.onclick = async () => {
    ok.disabled = true;
    try {
      await api(withQuery("dry_run=false"), { method, body });
      dialog.close();
      toast(`${title}: done`);
      route();
    } catch (err) {
      refusal.textContent = err.message;
      refusal.hidden = false;
    }
  };
  dialog.showModal();
  preview();
}

// ---- charts -----------------------------------------------------------------------------

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];

/// A line chart of `series` ({name, points: [[at_ms, value|null]]}) over the last 15 minutes.
function lineChart(id, title, unit, series) {
  const W = 600, H = 160, L = 44, B = 18;
  const now = Date.now(), from = now - 15 * 60 * 1000;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.1 : 1;
  const x = (t) => L + ((t - from) / (now - from)) * (W - L - 4);
  const y = (v) => (H - B) - (v / max) * (H - B - 6);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  for (const f of [0, 0.5, 1]) {
    const v = (max / 1.1) * f;
    add("line", { x1: L, x2: W, y1: y(v), y2: y(v), stroke: "#e5e7eb" });
    add("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#6b7280" }, fmtNum(v, v < 10 ? 1 : 0));
  }
  add("text", { x: L, y: H - 4, "font-size": 10, fill: "#6b7280" }, "−15 min");
  add("text", { x: W - 4, y: H - 4, "text-anchor": "end", "font-size": 10, fill: "#6b7280" }, "now");
  series.forEach((s, i) => {
    // A null value (no leader answered) breaks the line: a gap, not a zero.
    let d = "", pen = false, drawn = 0;
    for (const [t, v] of s.points) {
      if (v === null || t < from) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
      drawn++;
    }
    if (d) add("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.5, "data-points": drawn, class: "series" });
  });
  const legend = el("div", { class: "legend" }, series.map((s, i) =>
    el("span", {}, el("i", { style: { background: COLORS[i % COLORS.length] } }), s.name)));
  return el("div", { class: "chart", id }, el("h3", {}, `${title} (${unit})`), svg, legend);
}

async function refreshSamples() {
  const since = state.lastSample ? `?since=${state.lastSample}` : "";
  const got = await api(`/v1/agent/samples${since}`);
  state.samples = state.samples.concat(got.samples)
    .filter((s) => s.at_ms >= Date.now() - 15 * 60 * 1000);
  if (state.samples.length) state.lastSample = state.samples[state.samples.length - 1].at_ms;
  return got;
}

function chartsOf(samples, names) {
  const pts = (f) => samples.map((s) => [s.at_ms, f(s)]);
  const nodes = new Set();
  for (const s of samples) for (const l of s.lag || []) nodes.add(l.node_id);
  const lag = (key) => [...nodes].sort().map((id) => ({
    name: names(id),
    points: pts((s) => {
      if (!s.lag) return null;
      const l = s.lag.find((x) => x.node_id === id);
      return l ? (key === "entries" ? (l.entries ?? null) : l.seconds) : null;
    }),
  }));
  return el("div", { class: "charts" },
    lineChart("chart-writes", "Committed writes", "entries/s", [{ name: "applied", points: pts((s) => s.applied_per_s) }]),
    lineChart("chart-requests", "Requests this node served", "per second", [
      { name: "reads", points: pts((s) => s.reads_per_s) },
      { name: "writes", points: pts((s) => s.writes_per_s) },
    ]),
    lineChart("chart-lag-entries", "Replication lag", "entries", lag("entries")),
    lineChart("chart-lag-seconds", "Replication lag", "seconds", lag("seconds")));
}

// ---- pages ------------------------------------------------------------------------------

/// Fetch every path at once; each result is the value or the ApiError.
async function gather(paths) {
  return Promise.all(paths.map((p) => api(p).catch((err) => err)));
}

const failed = (v) => v instanceof Error;

function nodeNamer(members) {
  const byId = new Map();
  for (const m of members || []) byId.set(m.node_id ?? m.id, m.name || m.api_addr || m.rpc_addr || "");
  return (id) => (byId.get(id) ? `${byId.get(id)} (${id})` : String(id));
}

/// "2 of 3 voters up, tolerates 0 more failures".
function quorumDetail(cluster) {
  const voters = cluster.members.filter((m) => m.role === "voter");
  const up = voters.filter((m) => m.healthy).length;
  const spare = up - (Math.floor(voters.length / 2) + 1);
  return `${up} of ${voters.length} voters up` +
    (spare >= 0 ? `, tolerates ${spare} more failure${spare === 1 ? "" : "s"}` : "");
}

async function overview(page) {
  const [status, cluster, gossip, drift, roles] = await gather([
    "/v1/status", "/v1/cluster/status", "/v1/gossip/stats", "/v1/config/status", "/v1/roles",
  ]);
  await refreshSamples().catch((err) => err);
  const alerts = [];
  if (failed(cluster)) alerts.push(["bad", `No leader answers: ${cluster.message}`]);
  else if (!cluster.quorum_healthy) alerts.push(["bad", "Quorum lost: fewer than a majority of voters are healthy; writes will stop."]);
  if (!failed(cluster)) {
    for (const m of cluster.members.filter((x) => !x.healthy)) {
      const why = m.last_contact_ms === undefined ? "never heard from"
        : `last heard from ${fmtMs(m.last_contact_ms)} ago, ${m.lag_entries ?? "?"} entries behind`;
      alerts.push(["warn", `${m.role === "voter" ? "Voter" : "Learner"} ${m.node_id} (${m.api_addr || m.rpc_addr}) is unhealthy: ${why}. Bring it back, or remove it on the Nodes page if it is gone for good.`]);
    }
  }
  if (!failed(gossip) && gossip.members.dead) alerts.push(["warn", `Gossip: ${gossip.members.dead} agent(s) dead. Remove-dead on the Nodes page forgets them.`]);
  if (!failed(drift) && drift.drifted > 0) alerts.push(["warn", `Configuration drift: ${drift.drifted} node(s) have not applied the current configuration.`]);
  if (!failed(roles)) for (const r of roles) if (r.split_brain) alerts.push(["bad", `Split brain: more than one node claims role ${r.name}. Hand it over or demote the stale holder.`]);
  if (!failed(status) && status.tls && status.tls.expires_in_seconds < 14 * 86400) {
    alerts.push([status.tls.expires_in_seconds < 0 ? "bad" : "warn", `The API certificate expires in ${Math.floor(status.tls.expires_in_seconds / 86400)} day(s).`]);
  }
  if (!failed(gossip) && gossip.join_problem) alerts.push(["warn", `Gossip: ${gossip.join_problem}`]);
  if (!alerts.length) alerts.push(["ok", "No alerts: a leader with a healthy quorum, no drift, no split brain."]);
  const members = failed(cluster) ? [] : cluster.members;
  const names = nodeNamer(members);
  const counts = failed(gossip) ? {} : gossip.members;
  show(page, 
    el("h2", {}, "Overview"),
    el("ul", { class: "alerts", id: "alerts" }, alerts.map(([k, t]) => el("li", { class: k }, t))),
    el("div", { class: "cards" },
      card("Leader", failed(cluster) || !cluster.leader_id ? "none" : names(cluster.leader_id), "card-leader"),
      card("Term", failed(cluster) ? (failed(status) ? "–" : status.term) : cluster.term, "card-term"),
      card("Quorum", failed(cluster) ? "unknown" : cluster.quorum_healthy ? "healthy" : "LOST", "card-quorum",
        failed(cluster) ? null : quorumDetail(cluster)),
      card("Raft members", failed(cluster) ? "–" : `${members.filter((m) => m.role === "voter").length} voters, ${members.filter((m) => m.role !== "voter").length} learners`),
      card("Gossip members", Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ") || "–", "card-gossip"),
      card("Commit index", failed(cluster) ? "–" : cluster.commit_index),
      card("This node", failed(status) ? "–" : `${status.node_name || status.node_id} (${status.role})`),
      card("Config revision", failed(drift) ? "–" : `${drift.revision}, ${drift.drifted} drifted`)),
    chartsOf(state.samples, names));
}

async function nodes(page) {
  const [cluster, gossip] = await gather(["/v1/cluster/members", "/v1/members"]);
  const names = nodeNamer(failed(cluster) ? [] : cluster);
  const raftRows = failed(cluster) ? [] : cluster.map((m) => {
    const id = m.node_id;
    const actions = el("td", { class: "actions" },
      m.role === "voter"
        ? actionButton("Demote", "cluster", "write", () => confirmChange(`Demote node ${id}`, `/v1/cluster/members/${id}/demote`, undefined, true), { "data-action": "demote", "data-node": id })
        : actionButton("Promote", "cluster", "write", () => confirmChange(`Promote node ${id}`, `/v1/cluster/members/${id}/promote`), { "data-action": "promote", "data-node": id }),
      actionButton("Remove", "cluster", "write", () => confirmRemove(id), { "data-action": "remove", "data-node": id }),
      m.role === "voter" && !m.is_leader
        ? actionButton("Make leader", "cluster", "write", () => confirmChange(`Transfer leadership to node ${id}`, "/v1/cluster/leader/transfer", { to: id }), { "data-action": "transfer", "data-node": id })
        : null);
    return el("tr", { "data-node": id },
      el("td", {}, names(id)),
      el("td", {}, m.role, m.is_leader ? [" ", badge("leader", "ok")] : null, m.learner_only && m.role !== "voter" ? [" ", badge("learner-only")] : null),
      el("td", {}, m.rpc_addr),
      el("td", { class: "num" }, m.lag_entries ?? "–"),
      el("td", { class: "num" }, fmtNum(m.lag_seconds, 2)),
      el("td", { class: "num" }, fmtMs(m.last_contact_ms)),
      el("td", {}, m.healthy ? badge("healthy", "ok") : badge("unhealthy", "bad")),
      actions);
  });
  const gossipRows = failed(gossip) ? [] : gossip.map((m) => el("tr", { "data-member": m.id },
    el("td", {}, m.name ? `${m.name} (${m.id})` : String(m.id)),
    el("td", {}, m.role),
    el("td", {}, badge(m.state, m.state === "alive" ? "ok" : m.state === "suspect" ? "warn" : "bad")),
    el("td", {}, m.state !== "alive" && m.state !== "suspect" ? badge("unknown")
      : m.healthy ? badge("passing", "ok") : badge(`failing: ${(m.failing_checks || []).join(", ") || "?"}`, "bad")),
    el("td", {}, Object.entries(m.tags || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "–"),
    el("td", {}, m.api_addr || "–"),
    el("td", { class: "num" }, fmtMs(m.last_seen_ms)),
    el("td", {}, m.version || "–")));
  show(page, 
    el("h2", {}, "Raft members"),
    failed(cluster) ? problem(cluster) : null,
    missing("cluster", "write"),
    table(["Node", "Role", "RPC address", "Lag (entries)", "Lag (s)", "Last contact", "Health", "Actions"], raftRows, "raft-members"),
    el("h2", {}, "Gossip members"),
    failed(gossip) ? problem(gossip) : null,
    el("p", {}, actionButton("Remove dead members", "cluster", "write",
      () => confirmChange("Remove dead and left members", "/v1/members/remove-dead"), { id: "remove-dead" })),
    table(["Node", "Role", "State", "Checks", "Tags", "API address", "Last seen", "Version"], gossipRows, "gossip-members"));
}

function confirmRemove(id) {
  confirmChange(`Remove node ${id}`, `/v1/cluster/members/${id}`, undefined, true, "DELETE");
}

/// Lines of `a` and `b` as a diff (longest common subsequence; documents are small).
function diffLines(a, b) {
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(["-", a[i]]); i++; }
    else { out.push(["+", b[j]]); j++; }
  }
  return out;
}

async function showHistory(target, kind, name) {
  const enc = (s) => encodeURIComponent(s);
  const history = await api(`/v1/config/${enc(kind)}/${enc(name)}/history`);
  const versions = history.versions.filter((v) => !v.deleted);
  const pick = (id, chosen) => el("select", { id }, versions.map((v) =>
    el("option", { value: v.revision, selected: v.revision === chosen }, `revision ${v.revision} · ${v.updated_at} · ${v.author}`)));
  const older = pick("diff-from", versions.length > 1 ? versions[1].revision : versions[0]?.revision);
  const newer = pick("diff-to", versions[0]?.revision);
  const out = el("pre", { class: "diff", id: "diff" });
  const render = async () => {
    const [a, b] = await Promise.all([older.value, newer.value].map((r) =>
      api(`/v1/config/${enc(kind)}/${enc(name)}?revision=${r}`)));
    const lines = diffLines(JSON.stringify(a.content, null, 2).split("\n"), JSON.stringify(b.content, null, 2).split("\n"));
    out.replaceChildren(...lines.map(([op, text]) =>
      el("span", { class: op === "+" ? "add" : op === "-" ? "del" : "" }, `${op} ${text}\n`)));
  };
  older.onchange = newer.onchange = () => render().catch(report);
  show(target, 
    el("h2", {}, `${kind}/${name}: history`),
    table(["Revision", "Updated", "Author", "Hash"], history.versions.map((v) => el("tr", {},
      el("td", { class: "num" }, v.revision), el("td", {}, v.updated_at), el("td", {}, v.author),
      el("td", {}, v.deleted ? "deleted" : v.hash.slice(0, 16)))), "history"),
    versions.length ? el("p", {}, "Diff ", older, " → ", newer) : null,
    out);
  if (versions.length) await render();
}

async function configuration(page) {
  const [docs, drift, roles, elections] = await gather(["/v1/config", "/v1/config/status", "/v1/roles", "/v1/elections"]);
  const detail = el("div", { id: "doc-detail" }, el("p", { class: "muted" }, "Choose a document to see its history and diffs."));
  const docRows = failed(docs) ? [] : docs.map((d) => el("tr", {},
    el("td", {}, el("a", { href: "#/config", onclick: (e) => { e.preventDefault(); showHistory(detail, d.kind, d.name).catch(report); } }, `${d.kind}/${d.name}`)),
    el("td", { class: "num" }, d.revision), el("td", {}, d.hash.slice(0, 16))));
  let matrix = failed(drift) ? problem(drift) : null;
  if (!failed(drift)) {
    const nodeIds = [...new Set(drift.documents.flatMap((d) => d.nodes.map((n) => n.node_id)))].sort();
    matrix = table(["Document", ...nodeIds.map(String)], drift.documents.map((d) => el("tr", {},
      el("td", {}, `${d.kind}/${d.name} @${d.revision}`),
      nodeIds.map((id) => {
        const n = d.nodes.find((x) => x.node_id === id);
        if (!n) return el("td", { class: "muted" }, "–");
        const kind = n.status === "in_sync" ? "ok" : n.status === "pending" ? "warn" : "bad";
        return el("td", { title: `applied ${n.applied_revision ?? "none"}, ${n.lag} behind` }, badge(n.status.replace("_", " "), kind));
      }))), "drift");
  }
  const roleRows = failed(roles) ? [] : roles.map((r) => el("tr", {},
    el("td", {}, r.name), el("td", {}, r.holder ?? "none"), el("td", { class: "num" }, r.epoch),
    el("td", {}, fmtMs(r.lease_remaining_ms)),
    el("td", {}, r.split_brain ? badge(`split brain: ${r.claims.map((c) => `${c.node_id}@${c.epoch}`).join(", ")}`, "bad") : badge("ok", "ok"))));
  const electionRows = failed(elections) ? [] : elections.map((e) => el("tr", {},
    el("td", {}, e.name), el("td", {}, e.holder ?? "none"), el("td", { class: "num" }, e.epoch),
    el("td", {}, fmtMs(e.lease_remaining_ms)),
    el("td", {}, e.handover ? `to ${e.handover.target}` : "–")));
  show(page, 
    el("h2", {}, "Documents"),
    failed(docs) ? problem(docs) : table(["Document", "Revision", "Hash"], docRows, "documents"),
    detail,
    el("h2", {}, "Desired vs applied, per node"),
    matrix,
    el("h2", {}, "Roles"),
    failed(roles) ? problem(roles) : table(["Role", "Holder", "Epoch", "Lease left", "Claims"], roleRows, "roles"),
    el("h2", {}, "Elections"),
    failed(elections) ? problem(elections) : table(["Election", "Holder", "Epoch", "Lease left", "Handover"], electionRows, "elections"));
}

async function settings(page) {
  const [view] = await gather(["/v1/agent/settings"]);
  if (failed(view)) { show(page, el("h2", {}, "Settings"), problem(view)); return; }
  const rows = view.settings.map((s) => el("tr", { "data-key": s.key },
    el("td", {}, s.key),
    el("td", {}, s.live ? badge("live", "ok") : badge("restart")),
    el("td", {}, el("code", {}, JSON.stringify(s.value)))));
  const result = el("div", { id: "reload-result" });
  const reload = async () => {
    try {
      const r = await api("/v1/agent/reload", { method: "POST" });
      result.replaceChildren(el("p", {}, `Applied: ${r.applied.map((a) => `${a.setting} (${a.detail})`).join("; ") || "nothing changed"}. Needs a restart: ${r.needs_restart.join(", ") || "nothing"}.`));
      route();
    } catch (err) {
      result.replaceChildren(problem(err));
    }
  };
  show(page, 
    el("h2", {}, `Settings of node ${view.node_id}`),
    el("p", { class: "muted" }, "Effective values from this agent's configuration file, environment and flags (secrets hidden). Edit the file, then reload: the same call as `conclave reload` or SIGHUP. Live settings take effect at once; the others after a restart."),
    el("p", {}, actionButton("Reload configuration", "cluster", "admin", reload, { id: "reload", class: "primary" })),
    missing("cluster", "admin"),
    result,
    table(["Setting", "Changes", "Effective value"], rows, "settings"));
}

async function audit(page) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const filters = el("form", { class: "filters", id: "audit-filters" },
    el("label", {}, "Kind", el("select", { name: "kind" }, ["", "membership", "leadership", "config", "acl", "election", "kv", "snapshot", "recovery", "ipam"].map((k) =>
      el("option", { value: k, selected: params.get("kind") === k }, k || "any")))),
    el("label", {}, "Actor", el("input", { name: "actor", value: params.get("actor") || "", placeholder: "anonymous, node:…, token accessor" })),
    el("label", {}, "Limit", el("input", { name: "limit", type: "number", min: 1, max: 1000, value: params.get("limit") || 100 })),
    el("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) if (v) q.set(k, v);
    location.hash = `#/audit?${q}`;
  });
  const query = new URLSearchParams();
  for (const k of ["kind", "actor"]) if (params.get(k)) query.set(k, params.get(k));
  query.set("limit", params.get("limit") || "100");
  const [entries] = await gather([`/v1/audit?${query}`]);
  const rows = failed(entries) ? [] : entries.map((e) => el("tr", {},
    el("td", { class: "num" }, e.seq), el("td", {}, e.time), el("td", {}, e.kind), el("td", {}, e.action),
    el("td", {}, e.subject), el("td", {}, e.actor), el("td", {}, e.outcome === "applied" ? badge("applied", "ok") : badge(e.outcome, "bad")),
    el("td", {}, el("code", {}, JSON.stringify(e.details || {})))));
  show(page, el("h2", {}, "Audit log"), filters,
    failed(entries) ? problem(entries) : table(["#", "Time", "Kind", "Action", "Subject", "Actor", "Outcome", "Details"], rows, "audit"));
}

const PAGES = { overview, nodes, config: configuration, settings, audit };
const REFRESH_MS = { overview: 2000, nodes: 3000 };

function report(err) {
  if (err && err.status === 401) return;
  toast(err && err.message ? err.message : String(err), true);
}

async function route() {
  const name = (location.hash.replace(/^#\//, "").split("?")[0]) || "overview";
  const render = PAGES[name] || overview;
  state.page = name;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === name);
  clearTimeout(state.timer);
  const page = document.getElementById("page");
  try {
    // How long a page takes from its first request to its data on screen (the tests and
    // bench/dashboard.sh read these measures).
    const started = performance.now();
    await render(page);
    performance.measure(`render:${name}`, { start: started });
    page.dataset.loaded = name;
  } catch (err) {
    if (err.status !== 401) show(page, problem(err));
  }
  if (REFRESH_MS[name]) {
    state.timer = setTimeout(() => {
      // Only refresh when no dialog is open (a confirmation must not change under the user).
      if (!document.querySelector("dialog[open]") && state.page === name) route();
      else state.timer = setTimeout(route, REFRESH_MS[name]);
    }, REFRESH_MS[name]);
  }
}

async function start() {
  setupLogin();
  window.addEventListener("hashchange", route);
  try {
    const status = await api("/v1/status");
    document.getElementById("cluster-name").textContent = `cluster ${status.cluster_name || status.cluster_id} · node ${status.node_name || status.node_id}`;
    document.title = `conclave · ${status.cluster_name || status.cluster_id}`;
  } catch (err) {
    if (err.status !== 401) report(err);
  }
  await loadAccess().catch(report);
  await route();
}

start();
