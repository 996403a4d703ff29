// kiln's pages: the launch form (/) and the launch page (/v2/<provider>/<spec>).
// Both read GET /build/<provider>/<spec> as server-sent events and open the session on `ready`.
"use strict";

function specFor(repo, ref) {
  const r = (ref || "").trim() || "HEAD";
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

function follow(spec, urlpath, redirect) {
  const log = document.getElementById("log");
  const phase = document.getElementById("phase");
  const source = new EventSource("/build/" + spec);
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.phase) phase.textContent = event.phase;
    if (event.message) {
      log.textContent += event.message;
      log.scrollTop = log.scrollHeight;
    }
    if (event.phase === "ready" || event.phase === "failed") source.close();
    if (event.phase === "ready" && event.url) {
      const target = new URL(urlpath || "lab", event.url);
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
    const link = window.location.origin + "/v2/" + spec + (file ? "?" + params.toString() : "");
    document.getElementById("link").value = link;
    document.getElementById("badge").value =
      "[![Launch with kiln](" + window.location.origin + "/badge_logo.svg)](" + link + ")";
    document.getElementById("share").hidden = false;
    document.getElementById("progress").hidden = false;
    document.getElementById("log").textContent = "";
    follow(spec, params.get("urlpath"), false);
  });
} else if (window.location.pathname.startsWith("/v2/")) {
  const spec = window.location.pathname.slice("/v2/".length);
  document.getElementById("spec").textContent = decodeURIComponent(spec);
  follow(spec, urlpathFrom(new URLSearchParams(window.location.search)), true);
}
