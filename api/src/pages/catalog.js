// The catalogue page of a community (/communities/<c>): each entry with its versions and last
// check, from GET /api/communities/<c>/catalog; a version's packages, its build log, and the diff
// between two versions on demand. Everything from the catalogue is set as text, never as HTML.
// kiln.js comes first (BASE, rows).
"use strict";

const COMMUNITY = document.querySelector('meta[name="kiln-community"]').content;
const API = BASE + "api/communities/" + encodeURIComponent(COMMUNITY) + "/";

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function getJson(path) {
  return fetch(API + path).then((r) => r.json().then((body) => {
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }));
}

// The detail section: a title, a table (head and rows) or a log.
function showDetail(title, head, rowsOf, log) {
  document.getElementById("detail-title").textContent = title;
  const thead = document.querySelector("#detail-table thead");
  const tbody = document.querySelector("#detail-table tbody");
  const pre = document.getElementById("detail-log");
  const filter = document.getElementById("packages-filter");
  thead.replaceChildren();
  tbody.replaceChildren();
  pre.hidden = log === undefined;
  pre.textContent = log || "";
  filter.hidden = !head || head[0] !== "Manager";
  filter.value = "";
  if (head) {
    const tr = el("tr");
    for (const h of head) tr.append(el("th", h));
    thead.append(tr);
    const render = (f) => {
      tbody.replaceChildren();
      for (const row of rowsOf) {
        if (f && !String(row[2]).includes(f)) continue;
        const r = el("tr");
        for (const cell of row) r.append(el("td", cell));
        tbody.append(r);
      }
    };
    render("");
    filter.oninput = (e) => render(e.target.value.trim().toLowerCase());
  }
  document.getElementById("detail").hidden = false;
}

function showPackagesOf(slug, n) {
  getJson("entries/" + slug + "/versions/" + n + "/packages").then(
    (record) => showDetail(slug + " v" + n + ": packages", ["Manager", "Environment", "Package", "Version"], rows(record)),
    (e) => showDetail(slug + " v" + n + ": packages", null, [], e.message));
}

function showLogOf(slug, n) {
  getJson("entries/" + slug + "/versions/" + n + "/log").then(
    (answer) => showDetail(slug + " v" + n + ": build log", null, [], answer.events.map((e) => e.message).join("")),
    (e) => showDetail(slug + " v" + n + ": build log", null, [], e.message));
}

function showDiff(slug, from, to) {
  const title = slug + ": v" + from + " → v" + to;
  getJson("entries/" + slug + "/diff?from=" + from + "&to=" + to).then((d) => {
    const out = [];
    for (const group of d.packages || []) {
      for (const p of group.added || []) out.push([group.manager, group.environment || "", p.name, "added", p.version || ""]);
      for (const p of group.removed || []) out.push([group.manager, group.environment || "", p.name, "removed", p.version || ""]);
      for (const p of group.changed || []) out.push([group.manager, group.environment || "", p.name, "changed", p.old + " → " + p.new]);
    }
    showDetail(title + (out.length ? "" : ": no package changed"), ["Manager", "Environment", "Package", "Change", "Version"], out);
  }, (e) => showDetail(title, null, [], e.message));
}

function button(text, onclick, cls) {
  const b = el("button", text, { type: "button", class: cls || "small" });
  b.onclick = onclick;
  return b;
}

function renderEntry(entry) {
  const section = el("section", null, { class: "entry", id: "entry-" + entry.slug });
  section.append(el("h2", entry.name));
  if (entry.description) section.append(el("p", entry.description));
  section.append(el("p", entry.source + " @ " + entry.ref + " · promotion " + entry.promotion +
    (entry.schedule ? " · checked " + entry.schedule : ""), { class: "muted" }));
  if (entry.last_check) {
    const when = new Date(entry.last_check.checked * 1000).toISOString().replace(".000Z", "Z");
    section.append(el("p", "Last check " + when + ": " + entry.last_check.result,
      { class: entry.last_check.error ? "check-error" : "check" }));
  }
  const table = el("table", null, { class: "versions" });
  const head = el("tr");
  for (const h of ["Version", "State", "Commit", "Image", "", ""]) head.append(el("th", h));
  table.append(head);
  const numbers = [];
  for (const v of entry.versions) {
    numbers.push(v.number);
    const tr = el("tr", null, { class: "state-" + v.state });
    let state = v.state + (v.pinned ? " · pinned: " + v.pinned : "");
    if (v.reason && v.state !== "promoted") state += " (" + v.reason + ")";
    tr.append(el("td", "v" + v.number), el("td", state), el("td", (v.commit || "").slice(0, 12)),
      el("td", v.deleted ? "deleted" : v.image));
    const actions = el("td");
    if (!v.deleted && v.state !== "building" && v.state !== "failed")
      actions.append(button("Packages", () => showPackagesOf(entry.slug, v.number)));
    const logCell = el("td");
    logCell.append(button("Log", () => showLogOf(entry.slug, v.number)));
    tr.append(actions, logCell);
    table.append(tr);
  }
  section.append(table);
  if (numbers.length >= 2) {
    const form = el("p", null, { class: "diff" });
    const pick = (selected) => {
      const s = el("select");
      for (const n of numbers) {
        const o = el("option", "v" + n, { value: n });
        if (n === selected) o.selected = true;
        s.append(o);
      }
      return s;
    };
    const from = pick(numbers[1]);
    const to = pick(numbers[0]);
    form.append("Compare ", from, " with ", to, " ", button("Diff", () => showDiff(entry.slug, from.value, to.value)));
    section.append(form);
  }
  return section;
}

getJson("catalog").then((catalog) => {
  document.getElementById("community-name").textContent = catalog.community.name;
  document.getElementById("community-description").textContent = catalog.community.description || "";
  const entries = document.getElementById("entries");
  entries.replaceChildren(...catalog.entries.map(renderEntry));
  document.getElementById("catalog-status").textContent =
    catalog.entries.length + " environments · the spawn form reads " + BASE + "communities/" + COMMUNITY + "/profiles";
}, (e) => (document.getElementById("catalog-status").textContent = e.message));
