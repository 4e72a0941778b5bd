// The operations page: the stores grid (polled every 2 s, so a store that dies turns
// offline as soon as central hears its will), a store's drill-down, open alerts with
// acknowledge, and the ATP lookup and orders board when this central serves them.
"use strict";

const POLL_MS = 2000;
let selected = null;
let features = { atp: false, orders: false };

function $(id) { return document.getElementById(id); }

function text(v) { return v === null || v === undefined ? "–" : String(v); }

function cell(tr, value, cls) {
  const td = document.createElement("td");
  td.textContent = text(value);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function empty(tbody, cols, message) {
  const tr = tbody.insertRow();
  const td = cell(tr, message, "empty");
  td.colSpan = cols;
}

function secs(s) {
  if (s === null || s === undefined) return null;
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

async function api(url, options) {
  const r = await fetch(url, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options || {}));
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  return { status: r.status, body };
}

function showGrid(d) {
  features = d.features;
  const mqtt = $("mqtt");
  mqtt.textContent = "MQTT: " + (d.mqtt_connected ? "connected" : "disconnected");
  mqtt.className = "pill " + (d.mqtt_connected ? "on" : "off");
  const online = d.stores.filter(s => s.state === "online").length;
  $("summary").textContent = online + " of " + d.stores.length + " stores online";
  const tbody = $("stores").querySelector("tbody");
  tbody.replaceChildren();
  if (!d.stores.length) { empty(tbody, 9, "no store has reported yet"); return; }
  for (const s of d.stores) {
    const tr = tbody.insertRow();
    tr.dataset.store = s.store;
    tr.dataset.state = s.state;
    tr.className = "clickable" + (s.store === selected ? " selected" : "");
    cell(tr, s.store);
    cell(tr, s.state, "state state-" + s.state);
    cell(tr, s.since ? s.since.replace("T", " ").slice(0, 19) : null);
    cell(tr, s.backlog, "num");
    cell(tr, secs(s.ack_lag_s), "num");
    cell(tr, s.last_ack_age_s === null ? null : secs(s.last_ack_age_s) + " ago", "num");
    cell(tr, s.commands_pending, "num");
    cell(tr, s.digest, s.digest ? "digest " + s.digest : "digest");
    cell(tr, s.open_alerts, "num alerts");
    tr.addEventListener("click", () => { selected = s.store; drill(s.store).catch(showError); });
  }
}

async function drill(store) {
  $("drill").hidden = false;
  $("drill-store").textContent = store;
  for (const tr of $("stores").querySelectorAll("tbody tr")) tr.classList.toggle("selected", tr.dataset.store === store);
  const enc = encodeURIComponent(store);
  const [status, stock, commands] = await Promise.all([
    api("/v1/stores/" + enc), api("/v1/stores/" + enc + "/stock"), api("/v1/stores/" + enc + "/commands/pending")]);
  const st = $("drill-stock").querySelector("tbody");
  st.replaceChildren();
  const rows = (stock.body && stock.body.stock) || [];
  if (!rows.length) empty(st, 4, "no stock");
  for (const r of rows.slice(0, 200)) {
    const tr = st.insertRow();
    cell(tr, r.sku); cell(tr, r.on_hand, "num"); cell(tr, r.reserved, "num"); cell(tr, r.available, "num");
  }
  const dl = $("drill-digest");
  dl.replaceChildren();
  const s = status.body || {};
  const last = s.last_digest || {};
  const result = s.digest_result || {};
  const facts = [["epoch", s.epoch], ["last seq", s.last_seq],
                 ["digest through", last.through_seq === undefined ? null : "seq " + last.through_seq + ", cseq " + last.through_cseq],
                 ["result", result.match === undefined ? null : (result.match ? "match" : "mismatch")],
                 ["checked", result.ts], ["SKUs (store / central)", result.store_skus === undefined ? null : result.store_skus + " / " + result.central_skus],
                 ["quarantined", s.quarantined_open]];
  for (const [k, v] of facts) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = text(v);
    if (k === "result" && v) dd.className = v;
    dl.append(dt, dd);
  }
  const ct = $("drill-commands").querySelector("tbody");
  ct.replaceChildren();
  const cmds = (commands.body && commands.body.commands) || [];
  if (!cmds.length) empty(ct, 3, "none pending");
  for (const c of cmds) { const tr = ct.insertRow(); cell(tr, c.cseq, "num"); cell(tr, c.type); cell(tr, c.created); }
}

function detailText(d) {
  if (!d) return "";
  return Object.entries(d).filter(([, v]) => typeof v !== "object").map(([k, v]) => k + "=" + v).join(" ").slice(0, 160);
}

async function ack(id, button) {
  button.disabled = true;
  const r = await api("/v1/alerts/" + id + "/ack", { method: "POST" });
  if (r.status === 200) {
    const tr = button.closest("tr");
    if (tr) tr.remove();
    await refresh();
  } else {
    button.disabled = false;
  }
}

function showAlerts(alerts) {
  const tbody = $("alerts").querySelector("tbody");
  tbody.replaceChildren();
  if (!alerts.length) { empty(tbody, 6, "no open alerts"); return; }
  for (const a of alerts) {
    const tr = tbody.insertRow();
    tr.dataset.alertId = a.id;
    cell(tr, a.ts.replace("T", " ").slice(0, 19));
    cell(tr, a.store);
    cell(tr, a.kind);
    cell(tr, a.severity, "sev-" + a.severity);
    cell(tr, detailText(a.detail));
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.className = "small ack";
    b.textContent = "Acknowledge";
    b.addEventListener("click", () => ack(a.id, b).catch(showError));
    td.appendChild(b);
    tr.appendChild(td);
  }
}

async function showOrders() {
  const box = $("orders");
  if (!features.orders) { box.innerHTML = '<p class="muted">not available (this central has no orders board yet)</p>'; return; }
  const { status, body } = await api("/v1/orders");
  if (status === 404) { box.innerHTML = '<p class="muted">not available</p>'; return; }
  const orders = (body && (body.orders || body.items)) || [];
  if (!orders.length) { box.innerHTML = '<p class="muted">no orders</p>'; return; }
  const table = document.createElement("table");
  table.className = "compact";
  table.innerHTML = "<thead><tr><th>order</th><th>store</th><th>status</th></tr></thead><tbody></tbody>";
  for (const o of orders.slice(0, 50)) {
    const tr = table.tBodies[0].insertRow();
    cell(tr, o.order_ref || o.order_id || o.id); cell(tr, o.store); cell(tr, o.status || o.state);
  }
  box.replaceChildren(table);
}

async function lookupAtp(event) {
  event.preventDefault();
  const box = $("atp");
  if (!features.atp) { box.innerHTML = '<p class="muted">not available (this central has no ATP yet)</p>'; return; }
  const sku = $("atp-sku").value.trim();
  const { status, body } = await api("/v1/atp?sku=" + encodeURIComponent(sku));
  const pre = document.createElement("pre");
  pre.textContent = status === 404 && !(body && body.detail && body.detail !== "Not Found") ? "not available" : JSON.stringify(body, null, 1);
  box.replaceChildren(pre);
}

function showError(err) { $("updated").textContent = "update failed: " + err.message; }

async function refresh() {
  const [grid, alerts] = await Promise.all([api("/v1/grid"), api("/v1/alerts/open?limit=50")]);
  showGrid(grid.body);
  showAlerts(alerts.body.alerts);
  $("updated").textContent = new Date().toLocaleTimeString();
}

document.addEventListener("DOMContentLoaded", () => {
  $("atp-form").addEventListener("submit", e => lookupAtp(e).catch(showError));
  refresh().then(() => {
    if (!features.atp) $("atp").innerHTML = '<p class="muted">not available (this central has no ATP yet)</p>';
    return showOrders();
  }).catch(showError);
  setInterval(() => refresh().catch(showError), POLL_MS);
  setInterval(() => { if (selected) drill(selected).catch(showError); }, 5 * POLL_MS);
  setInterval(() => showOrders().catch(showError), 5 * POLL_MS);
});
