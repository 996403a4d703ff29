// kiln's pages: the launch form (/) and the launch page (/v2/<provider>/<spec>).
// Both read GET /build/<provider>/<spec> as server-sent events and open the session on `ready`.
"use strict";

// The path kiln is served under (KILN_BASE_URL, such as /services/kiln/ inside a hub), ending in "/".
const BASE = (document.querySelector('meta[name="kiln-base"]') || {}).content || "/";

function specFor(repo, ref) {
  const r = (ref || "").trim() || "HEAD";
  // A DOI (10.5281/zenodo.3242074, doi:..., https://doi.org/...) names an archived record: no ref.
  const doi = repo.trim().match(/^(?:doi:|https?:\/\/(?:dx\.)?doi\.org\/)?(10\.[0-9.]+\/\S+)$/i);
  if (doi) return "doi/" + doi[1];
  // A Software Heritage identifier, and a CKAN dataset named with ckan:.
  if (/^swh:1:(dir|rev):[0-9a-f]{40}/i.test(repo.trim())) return "swhid/" + encodeURIComponent(repo.trim());
  const ckan = repo.trim().match(/^ckan:(https?:\/\/\S+\/dataset\/\S+)$/);
  if (ckan) return "ckan/" + encodeURIComponent(ckan[1]);
  const gh = repo.trim().match(/^https?:\/\/github\.com\/([^/]+)\/([^/]+?)(?:\.git)?\/?$/);
  if (gh) return "gh/" + gh[1] + "/" + gh[2] + "/" + r;
  return "git/" + encodeURIComponent(repo.trim()) + "/" + encodeURIComponent(r);
}

function urlpathFrom(params) {
  if (params.get("urlpath")) return params.get("urlpath");
  if (params.get("labpath")) return "doc/tree/" + params.get("labpath");
  if (params.get("filepath")) return "tree/" + params.get("filepath");
  return "";
}

// Where to open the session: `urlpath` resolved against the server's URL, only when it stays a path
// inside that server (no scheme such as `javascript:`, no `//other.host/`, nothing above the
// server's own path). Anything else opens the server's start page, with a note in the log.
function sessionTarget(urlpath, serverUrl, log) {
  const server = new URL(serverUrl);
  const fallback = new URL("lab", server);
  if (server.protocol !== "http:" && server.protocol !== "https:") return null;
  if (!urlpath) return fallback;
  const refused = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(urlpath) || /^[\/\\]{2}/.test(urlpath) || urlpath.includes("\\");
  let target = null;
  if (!refused) {
    try {
      target = new URL(urlpath.replace(/^\/+/, ""), server);
    } catch (_) {
      target = null;
    }
  }
  if (!target || target.origin !== server.origin || !target.pathname.startsWith(server.pathname)) {
    log.textContent += "The link's urlpath is not a path inside the session; opening its start page instead.\n";
    return fallback;
  }
  return target;
}

// The packages of a built image, from GET /api/images/<name>/sbom?format=kiln. Names and
// versions come from the repository's environment: they are set as text, never as HTML.
function rows(record) {
  const out = [];
  for (const p of record.deb || []) out.push(["deb", "", p.name, p.version]);
  for (const env of record.python || [])
    for (const p of env.packages || []) out.push(["python", env.prefix, p.name, p.version]);
  for (const env of record.conda || [])
    for (const p of env.packages || []) out.push(["conda", env.prefix, p.name, p.version]);
  if (record.r) for (const p of record.r.packages || []) out.push(["r", p.library || "", p.name, p.version]);
  for (const env of record.julia || [])
    for (const p of env.packages || []) out.push(["julia", env.manifest, p.name, p.version || ""]);
  for (const p of record.npm || []) out.push(["npm", "", p.name, p.version]);
  return out;
}

function showPackages(image) {
  const base = BASE + "api/images/" + image + "/sbom";
  fetch(base + "?format=kiln").then((r) => (r.ok ? r.json() : null)).then((record) => {
    if (!record) return;
    const all = rows(record);
    const counts = {};
    for (const [manager] of all) counts[manager] = (counts[manager] || 0) + 1;
    document.getElementById("packages-summary").textContent =
      image + ": " + Object.entries(counts).map(([m, n]) => n + " " + m).join(", ") + " packages";
    document.getElementById("packages-sbom").href = base;
    const body = document.querySelector("#packages-table tbody");
    const render = (filter) => {
      body.replaceChildren();
      for (const row of all) {
        if (filter && !row[2].includes(filter)) continue;
        const tr = document.createElement("tr");
        for (const cell of row) {
          const td = document.createElement("td");
          td.textContent = cell;
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
    };
    render("");
    document.getElementById("packages-filter").oninput = (e) => render(e.target.value.trim().toLowerCase());
    document.getElementById("packages").hidden = false;
  }).catch(() => {});
}

function follow(spec, urlpath, redirect) {
  const log = document.getElementById("log");
  const phase = document.getElementById("phase");
  const source = new EventSource(BASE + "build/" + spec);
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.phase) phase.textContent = event.phase;
    if (event.message) {
      log.textContent += event.message;
      log.scrollTop = log.scrollHeight;
    }
    if (event.phase === "built" && event.imageName && document.getElementById("packages")) showPackages(event.imageName);
    if (event.phase === "ready" || event.phase === "failed") source.close();
    if (event.phase === "ready" && event.url) {
      const target = sessionTarget(urlpath, event.url, log);
      if (!target) return;
      target.searchParams.set("token", event.token);
      const link = document.getElementById("session-link");
      link.href = target.toString();
      document.getElementById("session").hidden = false;
      if (redirect) window.location.href = target.toString();
    }
  };
  source.onerror = () => {
    if (phase.textContent !== "ready" && phase.textContent !== "failed") {
      phase.textContent = "failed";
      log.textContent += "The event stream closed unexpectedly.\n";
    }
    source.close();
  };
}

const form = document.getElementById("launch-form");
if (form) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const spec = specFor(document.getElementById("repo").value, document.getElementById("ref").value);
    const file = document.getElementById("filepath").value.trim();
    const params = new URLSearchParams();
    if (file) params.set("urlpath", "doc/tree/" + file);
    const link = window.location.origin + BASE + "v2/" + spec + (file ? "?" + params.toString() : "");
    document.getElementById("link").value = link;
    document.getElementById("badge").value =
      "[![Launch with kiln](" + window.location.origin + BASE + "badge_logo.svg)](" + link + ")";
    document.getElementById("share").hidden = false;
    document.getElementById("progress").hidden = false;
    document.getElementById("log").textContent = "";
    follow(spec, params.get("urlpath"), false);
  });
} else if (window.location.pathname.startsWith(BASE + "v2/")) {
  const spec = window.location.pathname.slice((BASE + "v2/").length);
  document.getElementById("spec").textContent = decodeURIComponent(spec);
  follow(spec, urlpathFrom(new URLSearchParams(window.location.search)), true);
}

// A logged-in user's git tokens (PUT/DELETE /api/credentials/<host>, with the page's CSRF token).
// The list holds hosts and usernames only: kiln never answers a token back.
function privateRepositories(csrf) {
  const section = document.getElementById("private");
  if (!section) return;
  const list = document.getElementById("private-hosts");
  const status = document.getElementById("private-status");
  const call = (method, host, body) =>
    fetch(BASE + "api/credentials/" + encodeURIComponent(host), {
      method,
      headers: { "Content-Type": "application/json", "X-Kiln-CSRF": csrf },
      body: body ? JSON.stringify(body) : undefined,
    }).then((r) => r.json().catch(() => ({})).then((answer) => {
      if (!r.ok) throw new Error(answer.error || answer.message || r.statusText);
      return answer;
    }));
  const show = () =>
    fetch(BASE + "api/credentials").then((r) => (r.ok ? r.json() : { credentials: [] })).then((answer) => {
      list.replaceChildren();
      for (const c of answer.credentials || []) {
        const item = document.createElement("li");
        item.className = "private-host";
        item.textContent = c.host + " as " + c.username + " ";
        const forget = document.createElement("button");
        forget.type = "button";
        forget.textContent = "Forget";
        forget.onclick = () => call("DELETE", c.host).then(show, (e) => (status.textContent = e.message));
        item.append(forget);
        list.append(item);
      }
    });
  document.getElementById("private-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = document.getElementById("private-token");
    const host = document.getElementById("private-host").value.trim();
    call("PUT", host, { username: document.getElementById("private-username").value, token: token.value })
      .then((saved) => {
        token.value = "";
        status.textContent = "Saved: builds of repositories on " + saved.host + " use your token.";
        return show();
      }, (err) => (status.textContent = err.message));
  });
  section.hidden = false;
  show();
}

// Who is logged in (a hub login), with a way out; nothing when the service has no hub login.
fetch(BASE + "api/me").then((r) => (r.ok ? r.json() : null)).then((me) => {
  const who = document.getElementById("who");
  if (me && me.user && me.csrf) privateRepositories(me.csrf);
  if (!me || !who || !me.login) return;
  who.replaceChildren();
  const link = document.createElement("a");
  if (me.user) {
    who.append("Logged in as ");
    const name = document.createElement("strong");
    name.id = "who-name";
    name.textContent = me.user;
    who.append(name, " · ");
    link.href = BASE + "logout";
    link.textContent = "Log out";
  } else {
    link.href = BASE + "oauth_login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    link.textContent = "Log in through the hub";
  }
  who.append(link);
  who.hidden = false;
}).catch(() => {});
