// netlab ui: draws /api/snapshot and keeps it live from /api/events (server-sent events).
"use strict";
let snap = null, rates = {}, traced = null, selected = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function human(n, unit) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M" + unit;
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k" + unit;
  return Math.round(n) + unit;
}

function rateText(node, link) {
  const r = (rates[node] || {})[link];
  if (!r) return "";
  return `↓${human(r.rxPps, "p/s")} ${human(r.rxBps, "B/s")} ↑${human(r.txPps, "p/s")} ${human(r.txBps, "B/s")}`;
}

function linkRow(node, l) {
  const hot = traced && traced.links.has(node + "/" + l.name);
  return el("div", {class: "link" + (hot ? " traced" : ""), "data-link": node + "/" + l.name},
    el("span", {}, `${l.name} ${l.addr}`), el("span", {class: "rate"}, rateText(node, l.name)));
}

function drawNodes() {
  const box = document.getElementById("nodes");
  box.replaceChildren();
  for (const n of snap.nodes) {
    const pods = snap.pods.filter(p => p.node === n.name);
    const veths = Object.fromEntries(n.links.filter(l => l.to.includes("/")).map(l => [l.to, l]));
    const card = el("div", {class: "node" + (n.ready ? "" : " notready") +
                    (traced && traced.nodes.has(n.name) ? " traced" : ""), "data-node": n.name},
      el("h3", {}, n.name, " ", el("span", {class: "muted"}, `${n.role} ${n.ip} pods ${n.podCIDR}`)),
      el("div", {class: "muted"}, n.netns ? `netns ${n.netns}` : "this machine"));
    for (const l of n.links.filter(l => !l.to.includes("/") && l.name !== "cni0")) card.append(linkRow(n.name, l));
    const bridge = el("div", {class: "bridge"}, linkRow(n.name, n.links.find(l => l.name === "cni0")));
    for (const p of pods) {
      const v = veths[p.name];
      const cls = "pod" + (p.ready ? "" : " notready") + (p.deleting ? " deleting" : "") +
                  (traced && traced.pods.has(p.name) ? " traced" : "");
      bridge.append(el("div", {class: cls, "data-pod": p.name, title: p.phase},
        el("div", {}, el("b", {}, p.name), " ", p.ip || "(no IP yet)"),
        v ? linkRow(n.name, v) : el("div", {class: "muted"}, p.phase)));
    }
    card.append(bridge);
    card.append(el("div", {class: "routes"}, ...n.routes.map(r =>
      el("div", {}, `${r.dst}${r.via ? " via " + r.via : ""}${r.dev ? " dev " + r.dev : ""}`))));
    box.append(card);
  }
}

function drawServices() {
  const ul = document.getElementById("services");
  ul.replaceChildren();
  for (const s of snap.services) {
    ul.append(el("li", {class: s.name === selected ? "selected" : "", "data-service": s.name,
                        onclick: () => showRules(s.name)},
      el("div", {}, el("b", {}, s.name), ` ${s.type} ${s.clusterIP} ${s.ports.join(", ")}`),
      ...s.endpoints.map(e => el("div", {class: "ep", "data-endpoint": e.ip},
        `→ ${e.ip} ${e.pod || ""}${e.ready ? "" : " (not ready)"}`))));
  }
}

function draw() {
  document.getElementById("lab").textContent = snap.lab;
  document.getElementById("mode").textContent = `proxy mode ${snap.proxyMode}, backend ${snap.backend}`;
  const nw = snap.network;
  document.getElementById("network").textContent = nw.netns ?
    `node network: bridge ${nw.name}, gateway ${nw.gateway} (netns ${nw.netns}); every node's eth0 is on it` : nw.name;
  drawNodes();
  drawServices();
}

async function showRules(name) {
  selected = name;
  drawServices();
  const d = document.getElementById("detail");
  d.replaceChildren(el("p", {class: "muted"}, `reading ${name}'s rules…`));
  const r = await fetch("/api/rules?service=" + encodeURIComponent(name)).then(r => r.json());
  d.replaceChildren(el("h2", {}, `${r.service}: rules (${r.proxyMode})`),
    ...r.nodes.map(n => el("div", {class: "rules", "data-rules": n.node}, el("h3", {}, n.node), el("pre", {}, n.text))));
}

async function startTrace(ev) {
  ev.preventDefault();
  const src = document.getElementById("trace-src").value, dst = document.getElementById("trace-dst").value;
  const d = document.getElementById("detail");
  d.replaceChildren(el("p", {class: "muted"}, `tracing ${src} → ${dst}…`));
  const r = await fetch("/api/trace", {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: JSON.stringify({src, dst})});
  const body = await r.json();
  if (!r.ok) { d.replaceChildren(el("p", {class: "error"}, body.error)); return; }
  const t = body.trace;
  traced = {nodes: new Set(), links: new Set(), pods: new Set()};
  for (const h of t.hops) {
    traced.nodes.add(h.node);
    for (const p of h.packets) for (const dev of [p.in, p.out]) if (dev) traced.links.add(h.node + "/" + dev);
  }
  const m = /pod (\S+) on/.exec(t.receiver || "");
  if (m) traced.pods.add(m[1]);
  const src_pod = /^pod (\S+) /.exec(t.src);
  if (src_pod) traced.pods.add(src_pod[1]);
  draw();
  d.replaceChildren(el("h2", {}, `trace ${t.src} → ${t.dst}`), pathLine(t), el("pre", {id: "trace-text"}, body.text));
}

// The probe's path in order: its source, each node with the links it came in and left by, its receiver.
function pathLine(t) {
  const steps = [t.src.replace(/ \(.*/, "")];
  for (const h of t.hops) {
    const devs = [];
    for (const p of h.packets) for (const dev of [p.in, p.out]) if (dev && !devs.includes(dev)) devs.push(dev);
    steps.push(`${h.node} [${devs.join(" → ")}]`);
  }
  steps.push(t.receiver || "(no pod received it)");
  const line = el("div", {id: "path"});
  steps.forEach((s, i) => { if (i) line.append(" ⟶ "); line.append(el("span", {class: "hop"}, s)); });
  return line;
}

function connect() {
  const status = document.getElementById("status");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { status.textContent = "live"; });
  es.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  es.addEventListener("snapshot", e => { snap = JSON.parse(e.data); draw(); });
  es.addEventListener("rates", e => {
    rates = JSON.parse(e.data);
    for (const row of document.querySelectorAll("[data-link]")) {
      const [node, link] = row.dataset.link.split("/");
      row.querySelector(".rate").textContent = rateText(node, link);
    }
  });
}

document.getElementById("trace-form").addEventListener("submit", startTrace);
connect();
