// bosun's dashboard: the little the server-rendered pages cannot do alone.
// Plain JavaScript, no framework, no build step. It acts only through the
// JSON API, with the session cookie (sent by the browser, unreadable here)
// and the page's CSRF token.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  // A call to the API; resolves to {status, body} (body: parsed JSON or null).
  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let json = null;
    try { json = await resp.json(); } catch (_) { json = null; }
    return { status: resp.status, body: json };
  }

  const errorText = (r) => (r.body && r.body.error)
    ? `${r.status}: ${r.body.error.message}` : `the server answered ${r.status}`;

  // A line in the page's status region (read out by screen readers).
  function say(text, href) {
    const box = document.getElementById("status");
    if (!box) return;
    box.replaceChildren();
    const p = document.createElement("p");
    p.textContent = text;
    if (href) {
      const a = document.createElement("a");
      a.href = href; a.textContent = " Open the job";
      p.append(" ", a);
    }
    box.append(p);
  }

  const runUrl = (project, action, query) =>
    `/v1/projects/${encodeURIComponent(project)}/actions/${encodeURIComponent(action)}${query || ""}`;

  // Buttons that run an action: data-project, data-action, data-params,
  // data-then (stay | job | reload), data-confirm.
  async function run(button) {
    const { project, action, then, confirm: question } = button.dataset;
    if (question && !window.confirm(question)) return;
    const params = JSON.parse(button.dataset.params || "{}");
    button.disabled = true;
    try {
      const wait = then === "reload" ? "?wait=60s" : "";
      const r = await api("POST", runUrl(project, action, wait), { params });
      if (r.status !== 200 && r.status !== 202) { say(`${action} refused: ${errorText(r)}`); return; }
      const job = `/ui/jobs/${encodeURIComponent(r.body.id)}`;
      if (then === "job") { window.location.assign(job); return; }
      if (then === "reload") { window.location.reload(); return; }
      say(`${action}${params.name ? " " + params.name : ""}: job ${r.body.state}.`, job);
    } catch (e) {
      say(`${action} failed: ${e}`);
    } finally {
      button.disabled = false;
    }
  }

  // The run form of an action: its inputs are the params; an empty one is
  // left out, so the action's default applies.
  async function submitRun(form) {
    const params = {};
    for (const input of form.querySelectorAll("input[name]")) {
      if (input.value !== "") params[input.name] = input.value;
    }
    const error = form.querySelector(".form-error");
    const r = await api("POST", runUrl(form.dataset.project, form.dataset.action), { params });
    if (r.status === 200 || r.status === 202) {
      window.location.assign(`/ui/jobs/${encodeURIComponent(r.body.id)}`);
      return;
    }
    error.textContent = errorText(r);
    error.hidden = false;
  }

  // The live process feed: each frame has the rows that changed, and the
  // ids of every row when rows came or went; a page showing other rows
  // than those (a reload added or removed a process) loads again.
  function live(container) {
    const source = new EventSource(container.dataset.live);
    source.onmessage = (event) => {
      const { rows, ids } = JSON.parse(event.data);
      if (ids) {
        const shown = [...container.querySelectorAll("tr[data-row]")].map((tr) => tr.dataset.row);
        if (shown.join("\n") !== ids.join("\n")) { source.close(); window.location.reload(); return; }
      }
      for (const row of rows) {
        const tr = container.querySelector(`tr[data-row="${CSS.escape(row.id)}"]`);
        if (!tr) { source.close(); window.location.reload(); return; }
        tr.classList.toggle("unstable", row.unstable);
        for (const td of tr.querySelectorAll("td[data-cell]")) {
          const text = row[td.dataset.cell];
          if (td.textContent !== text) td.textContent = text;
        }
      }
    };
  }

  // A scrolling log: new lines append; while the reader is scrolled up the
  // view holds still and a button offers the new lines.
  function logView(box, url, onEnd) {
    const filter = document.getElementById("log-filter");
    const follow = document.getElementById("log-follow");
    const resume = document.getElementById("log-resume");
    const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    const matches = (line) => !filter || !filter.value || line.textContent.includes(filter.value);
    const toBottom = () => { box.scrollTop = box.scrollHeight; if (resume) resume.hidden = true; };
    let source = null;
    const open = () => {
      source = new EventSource(url);
      source.onmessage = (event) => {
        const pinned = atBottom();
        const line = document.createElement("div");
        line.className = "line";
        line.textContent = event.data;
        line.hidden = !matches(line);
        box.append(line);
        if (pinned) toBottom(); else if (resume) resume.hidden = false;
      };
      source.addEventListener("end", () => { source.close(); if (onEnd) onEnd(); });
    };
    if (filter) filter.addEventListener("input", () => {
      for (const line of box.querySelectorAll(".line")) line.hidden = !matches(line);
    });
    if (follow) follow.addEventListener("change", () => {
      if (follow.checked) open(); else if (source) source.close();
    });
    if (resume) resume.addEventListener("click", toBottom);
    box.addEventListener("scroll", () => { if (atBottom() && resume) resume.hidden = true; });
    toBottom();
    if (!follow || follow.checked) open();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.run");
    if (button) { event.preventDefault(); run(button); return; }
    const cancel = event.target.closest("button#cancel");
    if (cancel) {
      event.preventDefault();
      api("POST", `/v1/jobs/${encodeURIComponent(cancel.dataset.job)}/cancel`).then((r) => {
        if (r.status === 200 || r.status === 202 || r.status === 409) window.location.reload();
        else say(`cancel refused: ${errorText(r)}`);
      });
    }
  });

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form.run-form");
    if (form) { event.preventDefault(); submitRun(form); }
  });

  document.addEventListener("DOMContentLoaded", () => {
    for (const el of document.querySelectorAll("[data-live]")) live(el);
    const log = document.getElementById("log");
    if (log && log.dataset.follow) logView(log, log.dataset.follow);
    const jobLog = document.getElementById("job-log");
    if (jobLog && jobLog.dataset.jobFollow) {
      logView(jobLog, jobLog.dataset.jobFollow, () => window.location.reload());
    }
  });
})();
