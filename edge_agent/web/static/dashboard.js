// The store page: figures from /v1/dashboard, charts from /ui/charts/*.svg (drawn by the
// agent), live sales and device states from the event stream /v1/events/stream.
"use strict";

const params = new URLSearchParams(location.search);
const day = params.get("date");           // null: today (the agent's local day)
const query = day ? "?date=" + encodeURIComponent(day) : "";
const POLL_MS = 10000;
let refreshTimer = null;
let totals = null;

function $(id) { return document.getElementById(id); }

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fillTable(id, rows, columns, empty) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  if (!rows.length) {
    const tr = body.insertRow();
    const td = cell(tr, empty, "empty");
    td.colSpan = columns.length;
    return;
  }
  for (const r of rows) {
    const tr = body.insertRow();
    for (const [key, cls] of columns) cell(tr, typeof key === "function" ? key(r) : r[key], cls);
  }
}

function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %"; }

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  return (seconds / 3600).toFixed(1) + " h ago";
}

function showTotals(d) {
  const t = d.sales.totals;
  totals = { sales: t.sales, units: t.units, revenue: Number(t.revenue), currency: d.currency };
  $("kpi-sales").textContent = t.sales;
  $("kpi-units").textContent = t.units;
  $("kpi-revenue").textContent = Number(t.revenue).toFixed(2) + " " + d.currency;
  $("kpi-sales-lw").textContent = "last week " + t.last_week_sales;
  $("kpi-units-lw").textContent = "last week " + t.last_week_units;
  $("kpi-revenue-lw").textContent = "last week " + Number(t.last_week_revenue).toFixed(2);
  const f = d.footfall.totals;
  $("kpi-entries").textContent = f.entries;
  $("kpi-visits").textContent = f.visits;
  $("kpi-conversion").textContent = pct(f.conversion);
}

function showSync(s) {
  const dl = $("sync");
  dl.replaceChildren();
  const facts = [["link", s.link, "state-" + s.link], ["backlog", s.backlog + " events"],
                 ["oldest unsent", s.oldest_age_s === null ? "–" : age(s.oldest_age_s)],
                 ["last ack", age(s.ack_age_s)]];
  for (const [k, v, cls] of facts) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    if (cls) dd.className = cls;
    dl.append(dt, dd);
  }
}

function showAlerts(alerts) {
  const ul = $("alerts");
  ul.replaceChildren();
  if (!alerts.length) { const li = document.createElement("li"); li.className = "empty"; li.textContent = "no alerts"; ul.appendChild(li); return; }
  for (const a of alerts) {
    const li = document.createElement("li");
    li.className = "alert-" + a.kind;
    const what = a.kind === "oversold" ? (a.detail.skus || []).map(s => s.sku + " " + s.on_hand).join(", ")
               : a.detail.reason || a.detail.command_type || a.detail.sku || "";
    li.textContent = a.ts.slice(11, 19) + "  " + a.kind + (what ? " — " + what : "");
    ul.appendChild(li);
  }
}

function showDevices(devices) {
  fillTable("devices", devices, [["name"], ["kind"], [d => d.state, null], ["reads", "num"]],
            "no devices configured");
  for (const tr of $("devices").querySelectorAll("tbody tr")) {
    const state = tr.children[2];
    if (state) state.className = "state-" + state.textContent;
  }
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  return { status: r.status, body: r.status === 204 ? null : await r.json() };
}

async function loadChart(id, url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (r.ok) $(id).innerHTML = await r.text();  // SVG drawn by the agent (pygal), no script
}

async function loadOrders(available) {
  const box = $("orders");
  if (!available) { box.innerHTML = '<p class="muted">not available (this agent has no fulfilment queue yet)</p>'; return; }
  const { status, body } = await getJSON("/v1/orders");
  if (status === 404) { box.innerHTML = '<p class="muted">not available</p>'; return; }
  const orders = (body && (body.orders || body.items)) || [];
  if (!orders.length) { box.innerHTML = '<p class="muted">queue empty</p>'; return; }
  const table = document.createElement("table");
  table.innerHTML = "<thead><tr><th>order</th><th>status</th><th>lines</th></tr></thead><tbody></tbody>";
  box.replaceChildren(table);
  table.id = "orders-table";
  fillTable("orders-table", orders, [[o => o.order_ref || o.order_id || o.id], [o => o.status || o.state], [o => (o.lines || []).length, "num"]], "queue empty");
}

async function refresh() {
  const { body: d } = await getJSON("/v1/dashboard" + query);
  $("store").textContent = d.store;
  document.title = "Store " + d.store + " — dashboard";
  $("day").textContent = d.date + " (" + d.timezone + ")";
  showTotals(d);
  fillTable("footfall-table", d.footfall.hours.filter(h => h.entries || h.visits || h.sales),
            [["hour"], ["entries", "num"], ["visits", "num"], ["sales", "num"], [h => pct(h.conversion), "num"]],
            "no footfall yet");
  fillTable("top-skus", d.top_skus, [["sku"], ["name"], ["units", "num"], ["revenue", "num"]], "no sales yet");
  fillTable("low-stock", d.low_stock.items, [["sku"], ["name"], ["available", "num"]], "nothing low");
  showDevices(d.devices);
  showSync(d.sync);
  showAlerts(d.alerts);
  showRecentSales(d.recent_sales);
  $("updated").textContent = new Date().toLocaleTimeString();
  await Promise.all([loadChart("sales-chart", "/ui/charts/sales.svg" + query),
                     loadChart("footfall-chart", "/ui/charts/footfall.svg" + query),
                     loadOrders(d.features.orders)]);
}

function refreshSoon() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh().catch(showError); }, 1500);  // at most one refresh per 1.5 s in a rush
}

function showError(err) { $("updated").textContent = "update failed: " + err.message; }

let liveSales = 0;

function showRecentSales(sales) {
  if (liveSales) return;  // the stream has taken over the list
  const ul = $("latest-sales");
  ul.replaceChildren();
  if (!sales.length) { const li = document.createElement("li"); li.className = "empty"; li.textContent = "none yet"; ul.appendChild(li); return; }
  for (const s of sales) ul.appendChild(saleItem({ ...s, event: { ts: s.ts } }));
}

function saleItem(data) {
  const li = document.createElement("li");
  li.className = "sale";
  li.dataset.saleId = data.sale_id || "";
  const units = data.units === undefined ? "" : data.units + " units, ";
  li.textContent = (data.event && data.event.ts ? data.event.ts.slice(11, 19) + "  " : "") +
    (data.terminal || "") + "  " + units + (data.total || "") + " " + (data.currency || "") +
    (data.alerts ? "  ⚠ " + data.alerts.join(", ") : "");
  return li;
}

function onSale(data) {
  liveSales += 1;
  const ul = $("latest-sales");
  const empty = ul.querySelector(".empty");
  if (empty) empty.remove();
  const li = saleItem(data);
  li.classList.add("fresh");
  ul.prepend(li);
  while (ul.children.length > 30) ul.lastChild.remove();
  setTimeout(() => li.classList.remove("fresh"), 5000);
  if (totals && !day) {  // today's figures move at once; the charts follow the refresh
    totals.sales += 1; totals.units += data.units || 0; totals.revenue += Number(data.total || 0);
    $("kpi-sales").textContent = totals.sales;
    $("kpi-units").textContent = totals.units;
    $("kpi-revenue").textContent = totals.revenue.toFixed(2) + " " + totals.currency;
  }
  refreshSoon();
}

function onDevice(data) {
  for (const tr of $("devices").querySelectorAll("tbody tr")) {
    if (tr.children[0].textContent === data.device) {
      tr.children[2].textContent = data.state;
      tr.children[2].className = "state-" + data.state;
      return;
    }
  }
  refreshSoon();
}

function live() {
  const source = new EventSource("/v1/events/stream?topics=sale,checkout,return,device");
  const pill = $("live");
  source.onopen = () => { pill.textContent = "live"; pill.className = "pill on"; };
  source.onerror = () => { pill.textContent = "live: reconnecting"; pill.className = "pill off"; };
  source.addEventListener("sale", e => onSale(JSON.parse(e.data)));
  source.addEventListener("checkout", e => onSale(JSON.parse(e.data)));
  source.addEventListener("return", () => refreshSoon());
  source.addEventListener("device", e => onDevice(JSON.parse(e.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  refresh().catch(showError);
  live();
  setInterval(() => refresh().catch(showError), POLL_MS);
});
