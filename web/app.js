/*
 * Holdfast web UI. Plain JavaScript on the public REST API only: nothing here that the API
 * cannot do. The token (when tokens are in use) lives in sessionStorage and goes in the
 * Authorization header; there is no cookie, so no CSRF surface. Live updates come from the
 * audit log's server-sent events (read with fetch, so they carry the token), reconnecting.
 *
 * Never stale data shown as live: every view says when its data was read ("as of"); while
 * holdfast is unreachable the page says so, its actions are disabled, and when holdfast is back
 * the view's data and the event stream are reloaded. The same while holdfast answers but cannot
 * reach its database (503 "unavailable", docs/ha.md): the banner says why and since when, nothing
 * can be saved, and /readyz says when the database is back.
 */
'use strict';

const API = '/api/v1';
const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => [...el.querySelectorAll(sel)];
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const RANK = { viewer: 0, operator: 1, admin: 2 };

const state = { role: null, actor: null, liveListeners: new Set(), timers: [], charts: [], online: true, asOf: null, offlineSince: null, painted: null,
  dbDown: null, dbReason: '', database: null, skewMs: 0 };

/* ---------------- API ---------------- */

class ApiError extends Error {
  constructor(status, body, message) {
    super(message || (body && body.error && body.error.message) || ('HTTP ' + status));
    this.status = status;
    this.body = body;
  }
}

function token() { return sessionStorage.getItem('holdfast-token') || ''; }

async function api(method, path, body) {
  if (method !== 'GET' && !state.online) throw new ApiError(0, null, 'holdfast is unreachable: nothing was sent');
  const headers = {};
  if (token()) headers.Authorization = 'Bearer ' + token();
  /* every mutation says it is JSON, with or without a body (the server requires it) */
  if (method !== 'GET') headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    setOnline(false);
    throw new ApiError(0, null, 'holdfast is unreachable');
  }
  setOnline(true);
  serverClock(r);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (r.status === 401) { signIn(json); throw new ApiError(401, json); }
  if (dbFailed({ status: r.status, body: json })) suspectDb(json.error.message);
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

/* What the banner says: holdfast unreachable, else its database unreachable, else nothing. */
function showBanner() {
  const b = $('#banner');
  const asOf = state.asOf ? hhmmss(state.asOf) : '—';
  let msg = '';
  if (!state.online) {
    msg = `holdfast is unreachable since ${hhmmss(state.offlineSince)}: the page shows data as of ${asOf} and its actions are disabled until it is back.`;
  } else if (state.dbDown) {
    msg = `The database is unreachable since ${hhmmss(state.dbDown)} (holdfast says: ${state.dbReason}). Proxies keep their last configuration; changes cannot be saved, so actions are disabled. The page shows data as of ${asOf} and reloads by itself when the database is back.`;
  }
  b.hidden = !msg;
  b.textContent = msg;
  b.dataset.kind = !state.online ? 'holdfast' : state.dbDown ? 'database' : '';
}

/* Whether a change can be made now: holdfast answers and reaches its database. */
const writable = () => state.online && !state.dbDown;

/* The server's clock, from the Date header (whole seconds, so +0.5 s): heartbeat ages and
 * "since" durations are reckoned on it, not on the browser's clock. */
function serverClock(r) {
  const d = Date.parse(r.headers.get('Date') || '');
  if (!Number.isNaN(d)) state.skewMs = d + 500 - Date.now();
}
const serverNow = () => Date.now() + state.skewMs;

const hhmmss = (d) => d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

/* The view's data was read just now. */
function fresh() {
  state.asOf = new Date();
  showAsOf();
}

function showAsOf() {
  const el = $('#asof');
  el.classList.toggle('stale', !writable());
  el.textContent = state.asOf ? `${writable() ? '' : 'STALE · '}as of ${hhmmss(state.asOf)}` : '';
  el.title = writable() ? 'when the data on this page was read'
    : `${state.online ? 'holdfast cannot reach its database' : 'holdfast is unreachable'}: this page shows what it had then`;
}

/* While nothing can be saved, every action on the page is disabled and says why; unlock
 * re-enables what lock disabled (the view is then reloaded anyway). */
function lockActions() {
  const why = state.online ? 'the database is unreachable: changes cannot be saved' : 'holdfast is unreachable';
  $$('#main button, #main input, #main select, #strip button, #modal-confirm').forEach((el) => {
    if (el.disabled) return;
    el.disabled = true;
    el.dataset.offline = el.title;
    el.title = why;
  });
}
function unlockActions() {
  $$('[data-offline]').forEach((el) => {
    el.disabled = false;
    el.title = el.dataset.offline;
    delete el.dataset.offline;
  });
}

/* Back to normal (holdfast and its database answer): reload the view and the event stream
 * (what was missed is not in the stream). */
function resume() {
  unlockActions();
  if (state.role === null) {
    start();
  } else {
    startStream();
    route(true);
  }
}

/* Connection state: every request and the event stream report here. */
let healthPoll = null;
function setOnline(up) {
  if (up === state.online) return;
  state.online = up;
  document.body.classList.toggle('offline', !up);
  if (!up) {
    state.offlineSince = new Date();
    lockActions();
    if (!healthPoll) healthPoll = setInterval(probe, 1000);
  } else {
    clearInterval(healthPoll);
    healthPoll = null;
    if (!state.dbDown) resume();
  }
  showBanner();
  showAsOf();
}

/* Database state. A 503 "unavailable" answer: the database failed that request. /readyz (which
 * pings it) says whether it is unreachable (down, failing over, the network to it cut): then the
 * banner stays, and /readyz, polled each second, says when it is back (and why not, in its
 * reason). A request that failed once (a busy SQLite) shows its own error, no banner. */
const dbFailed = (e) => e.status === 503 && !!e.body && !!e.body.error && e.body.error.code === 'unavailable';
let readyPoll = null;
let dbCheck = null;
function suspectDb(message) {
  if (state.dbDown || dbCheck) return;
  dbCheck = probeReady(message).finally(() => { dbCheck = null; });
}

function setDbDown(down, reason, since) {
  if (down) state.dbReason = reason || state.dbReason || 'the database is unavailable';
  /* since: when the replica first failed to reach its database (its /readyz), so that a page
   * opened during the outage tells when it began */
  const began = since && !isNaN(Date.parse(since)) ? new Date(Date.parse(since)) : null;
  if (!!down === !!state.dbDown) {
    if (down && began && began < state.dbDown) state.dbDown = began;
    showBanner();
    return;
  }
  state.dbDown = down ? (began || new Date()) : null;
  document.body.classList.toggle('dbdown', !!down);
  if (down) {
    lockActions();
    if (!readyPoll) readyPoll = setInterval(probeReady, 1000);
  } else {
    clearInterval(readyPoll);
    readyPoll = null;
    if (state.online) resume();
  }
  showBanner();
  showAsOf();
}

async function probeReady(message) {
  if (!state.online) return; /* the /healthz probe runs; this one waits for holdfast */
  try {
    const r = await fetch('/readyz');
    const j = await r.json().catch(() => null);
    if (r.ok) setDbDown(false);
    else setDbDown(true, (j && j.reason) || message, j && j.unavailable_since);
  } catch (e) {
    setOnline(false);
  }
}

async function probe() {
  try {
    const r = await fetch('/healthz');
    if (r.ok) setOnline(true);
  } catch (e) { /* still down */ }
}

async function check() {
  try {
    setOnline((await fetch('/healthz')).ok);
  } catch (e) {
    setOnline(false);
  }
}

/* ---------------- auth ---------------- */

function signIn(err) {
  stopPage();
  $('#main').innerHTML = `
    <div class="card" id="signin"><h2>Sign in</h2>
      <p class="muted">This holdfast uses API tokens. Paste one (<code>holdfast token create --role operator</code>).</p>
      ${err && token() ? '<p class="error">That token was refused.</p>' : ''}
      <div class="actions"><input id="token" type="password" autocomplete="off" placeholder="hf_…">
      <button class="primary" id="signin-go">Sign in</button></div></div>`;
  const go = () => { sessionStorage.setItem('holdfast-token', $('#token').value.trim()); start(); };
  $('#signin-go').onclick = go;
  $('#token').onkeydown = (e) => { if (e.key === 'Enter') go(); };
  $('#token').focus();
}

function signOut() {
  sessionStorage.removeItem('holdfast-token');
  state.role = null;
  $('#who').textContent = '';
  $('#signout').hidden = true;
  $('#strip').innerHTML = '';
  if (streamAbort) streamAbort.abort();
  signIn(null);
}

function can(role) { return state.role !== null && RANK[state.role] >= RANK[role]; }

/* A button that the caller's role may not use is disabled, with the reason. */
function guard(btn, role) {
  if (!can(role)) {
    btn.disabled = true;
    btn.title = `needs the ${role} role (you are ${state.role})`;
  }
  return btn;
}

/* ---------------- live events ---------------- */

let streamAbort = null;
let streamGen = 0;
function startStream() {
  if (streamAbort) streamAbort.abort();
  liveEvents(++streamGen);
}

async function liveEvents(gen) {
  let backoff = 500;
  while (gen === streamGen) {
    streamAbort = new AbortController();
    try {
      const headers = { Accept: 'text/event-stream' };
      if (token()) headers.Authorization = 'Bearer ' + token();
      const r = await fetch(API + '/events?stream=true', { headers, signal: streamAbort.signal });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      backoff = 500;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = chunk.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
          if (data) {
            const ev = JSON.parse(data);
            state.liveListeners.forEach((fn) => fn(ev));
            stripSoon();
          }
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
    }
    if (gen !== streamGen) return;
    await check(); /* the stream ended: is holdfast down, or only the stream? */
    if (gen !== streamGen) return;
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 5000);
    if (!state.online) return; /* setOnline(true) starts a new stream */
  }
}

/* ---------------- page plumbing ---------------- */

function stopPage() {
  state.liveListeners.clear();
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.charts.forEach((c) => c.destroy());
  state.charts = [];
  state.chart = null;
}

function every(ms, fn) { state.timers.push(setInterval(fn, ms)); }

/* Replaces el's content; on a re-render of the same view, details the operator opened, boxes
 * ticked and the scroll position stay as they were. */
function paint(el, html) {
  const same = state.painted === location.hash;
  const open = new Set($$('details[open][data-key]', el).map((d) => d.dataset.key));
  const ticked = new Set($$('input[type=checkbox][data-key]:checked', el).map((i) => i.dataset.key));
  const y = window.scrollY;
  el.innerHTML = html;
  if (same) {
    $$('details[data-key]', el).forEach((d) => { if (open.has(d.dataset.key)) d.open = true; });
    $$('input[type=checkbox][data-key]', el).forEach((i) => { if (ticked.has(i.dataset.key)) i.checked = true; });
    window.scrollTo(0, y);
  }
  state.painted = location.hash;
}
const setMain = (html) => paint($('#main'), html);

let modalResolve = null;
/* A confirmation naming what changes; the confirm button is red only for destructive actions. */
function confirmDialog(title, html, confirmText, danger = false) {
  $('#modal-title').textContent = title;
  $('#modal-body').innerHTML = html;
  $('#modal-confirm').textContent = confirmText || 'Confirm';
  $('#modal-confirm').className = danger ? 'danger' : 'primary';
  $('#modal').hidden = false;
  $('#modal-confirm').focus();
  return new Promise((resolve) => { modalResolve = resolve; });
}
function closeModal(ok) { $('#modal').hidden = true; if (modalResolve) modalResolve(ok && writable()); modalResolve = null; }

/* Runs an action from a button; shows the API's refusal next to the button. */
async function act(btn, fn) {
  const errEl = btn.parentElement.querySelector('.error') || btn.insertAdjacentElement('afterend', Object.assign(document.createElement('span'), { className: 'error' }));
  errEl.textContent = '';
  btn.disabled = true;
  try {
    await fn();
  } catch (e) {
    if (e.status !== 401) errEl.textContent = e.message;
  } finally {
    btn.disabled = !writable();
  }
}

const fmtTime = (t) => (t ? new Date(t).toLocaleTimeString() : '—');
const fmtDate = (t) => (t ? new Date(t).toLocaleString() : '—');
const secondsUntil = (t) => Math.max(0, Math.ceil((new Date(t) - Date.now()) / 1000));
/* 45 s, 3 min 20 s, 2 h 5 min */
/* "300", "90s", "5m", "5 min", "1.5h" -> seconds (whole), or null when it is not a duration. */
function parseDur(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs)?\s*$/i.exec(text);
  if (!m) return null;
  const unit = (m[2] || 's').toLowerCase()[0];
  return Math.round(parseFloat(m[1]) * { s: 1, m: 60, h: 3600 }[unit]);
}

function fmtDur(s) {
  s = Math.round(s);
  if (s < 90) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  return `${Math.floor(s / 3600)} h${Math.round((s % 3600) / 60) ? ` ${Math.round((s % 3600) / 60)} min` : ''}`;
}
function debounce(fn, ms) { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }
const plural = (n, one, many) => `${n} ${n === 1 ? one : (many || one + 's')}`;

/* ---------------- sync state of a proxy ---------------- */

/* One type on one stream: SYNCED (ACKed the current version), PENDING (sent, not ACKed yet),
 * NACK (rejected the last version sent), STALE (behind the current snapshot). */
function syncState(t) {
  if (!t || !t.subscribed) return { s: 'none' };
  if (t.last_nack && t.sent_version && t.last_nack.version === t.sent_version && t.acked_version !== t.sent_version) return { s: 'NACK' };
  if (t.sent_version && t.acked_version !== t.sent_version) return { s: 'PENDING', age: t.sent_at ? (Date.now() - Date.parse(t.sent_at)) / 1000 : null };
  if (!t.sent_version) return { s: 'PENDING', age: null };
  if (t.current_version && t.acked_version !== t.current_version) return { s: 'STALE' };
  return { s: 'SYNCED' };
}
const proxyInSync = (p) => Object.values(p.types).every((t) => ['SYNCED', 'none'].includes(syncState(t).s));

function syncBadge(t) {
  const st = syncState(t);
  if (st.s === 'none') return '<span class="muted">—</span>';
  const v = (x) => (x ? x.slice(0, 8) : '—');
  const title = `sent ${v(t.sent_version)} ${t.sent_at ? 'at ' + fmtTime(t.sent_at) : ''} · ACKed ${v(t.acked_version)} ${t.acked_at ? 'at ' + fmtTime(t.acked_at) : ''} · current ${t.current_version ? v(t.current_version) : 'unknown (delta)'}` +
    (t.last_nack ? ` · rejected ${v(t.last_nack.version)} at ${fmtTime(t.last_nack.at)}: ${t.last_nack.error}` : '');
  const label = st.s === 'PENDING' ? (st.age === null ? 'PENDING' : `PENDING ${fmtDur(Math.max(0, st.age))}`) : st.s;
  return `<span class="badge sync-${st.s.toLowerCase()}" data-sync="${st.s}" title="${esc(title)}">${label}</span>`;
}

/* ---------------- the incident strip (every page) ---------------- */

const problem = (e) => e.health === 'unhealthy' || e.admin_state !== 'active';
/* an endpoint that can take traffic: active and not evicted */
const serving = (e) => e.admin_state === 'active' && e.health !== 'unhealthy';

async function loadFleet() {
  const [services, proxies, health] = await Promise.all([api('GET', '/services'), api('GET', '/proxies'), api('GET', '/health')]);
  const fleets = {};
  await Promise.all(services.items.map(async (s) => { fleets[s.name] = (await api('GET', `/services/${encodeURIComponent(s.name)}/fleets`)).items; }));
  return { services: services.items, proxies: proxies.items, endpoints: health.endpoints, fleets };
}

async function refreshStrip() {
  if (state.role === null) return;
  let f, deps, rs, rep;
  try {
    [f, deps, rs, rep] = await Promise.all([loadFleet(), api('GET', '/deployments'), api('GET', '/restarts'), api('GET', '/replicas')]);
    const live = rs.items.filter((r) => r.state === 'running' || r.state === 'paused');
    rs.details = await Promise.all(live.map((r) => api('GET', '/restarts/' + r.id)));
  } catch (e) {
    return;
  }
  const items = [];
  const add = (cls, n, text, href) => items.push(`<a class="inc ${cls}" href="${href}" data-inc="${esc(text.split(' ')[0])}"><strong>${n}</strong> ${esc(text)}</a>`);
  const nack = f.proxies.filter((p) => Object.values(p.types).some((t) => syncState(t).s === 'NACK'));
  /* a push takes a moment to be ACKed: the strip counts a proxy behind after 5 s of it */
  const lagging = (p) => Object.values(p.types).some((t) => {
    const st = syncState(t);
    return st.s === 'STALE' || (st.s === 'PENDING' && (st.age === null ? Date.now() - Date.parse(p.connected_since) > 5000 : st.age >= 5));
  });
  const behind = f.proxies.filter((p) => lagging(p) && !nack.includes(p));
  const evicted = f.endpoints.filter((e) => e.health === 'unhealthy');
  const drained = f.endpoints.filter((e) => e.admin_state !== 'active');
  if (nack.length) add('red', nack.length, `${nack.length === 1 ? 'proxy' : 'proxies'} rejected configuration (NACK)`, '#/?show=proxies');
  if (behind.length) add('amber', behind.length, `${behind.length === 1 ? 'proxy' : 'proxies'} not in sync`, '#/?show=proxies');
  if (evicted.length) add('red', evicted.length, `evicted ${evicted.length === 1 ? 'endpoint' : 'endpoints'} (unhealthy)`, '#/?filter=unhealthy');
  for (const s of f.services) {
    for (const fl of (f.fleets[s.name] || []).filter((x) => x.role === 'active')) {
      const eps = f.endpoints.filter((e) => e.service === s.name && e.fleet === fl.name);
      if (!eps.some(serving)) add('red', `${s.name}/${fl.name}`, `active fleet with no serving endpoint (${eps.length} total)`, `#/?filter=${encodeURIComponent(s.name + '/' + fl.name)}`);
    }
  }
  state.database = rep.database;
  if (rep.database === 'postgresql') {
    const { leader, silent } = replicaTrouble(rep);
    if (!leader) add('red', 'No', 'replica leads: drains and restarts wait', '#/replicas');
    if (silent.length) add('amber', silent.length, `${silent.length === 1 ? 'replica' : 'replicas'} without heartbeat`, '#/replicas');
  }
  if (drained.length) add('amber', drained.length, `${drained.length === 1 ? 'endpoint' : 'endpoints'} draining or disabled`, '#/?filter=draining%20disabled');
  const running = deps.items.filter((d) => ['planned', 'ttl_lowered', 'draining', 'rolling_back'].includes(d.state));
  for (const d of running) add('amber', d.service, `deployment ${d.state.replace('_', ' ')} (${d.from_fleet} → ${d.to_fleet})`, '#/deployments/' + d.id);
  for (const r of rs.details) {
    const waiting = r.batch_list.filter((b) => b.state === 'ready').length;
    if (waiting) add('red', waiting, `restart ${waiting === 1 ? 'batch waits' : 'batches wait'} on “mark restarted” (${r.service}/${r.fleet})`, '#/restarts/' + r.id);
    else add('amber', `${r.service}/${r.fleet}`, `restart ${r.state}`, '#/restarts/' + r.id);
  }
  const fleetChips = f.services.flatMap((s) => (f.fleets[s.name] || []).filter((x) => x.role === 'active' || x.role === 'draining').map((fl) => {
    const eps = f.endpoints.filter((e) => e.service === s.name && e.fleet === fl.name);
    const ok = eps.filter(serving).length;
    return `<a class="chip ${ok === eps.length ? '' : ok ? 'amber' : 'red'}" href="#/?filter=${encodeURIComponent(s.name + '/' + fl.name)}" title="serving (active, not evicted) of all endpoints">${esc(s.name)}/${esc(fl.name)} ${ok}/${eps.length}</a>`;
  }));
  if (rep.database === 'postgresql') {
    const alive = rep.items.filter((r) => r.alive).length;
    fleetChips.unshift(`<a class="chip replicas ${alive === rep.items.length ? '' : 'amber'}" href="#/replicas" title="holdfast replicas with a heartbeat, of all">replicas ${alive}/${rep.items.length}</a>`);
  }
  $('#strip').innerHTML = (items.length ? items.join('') : '<span class="inc green" data-inc="clear">No incident</span>') + fleetChips.join('');
  $('#strip').hidden = false;
}
const stripSoon = debounce(refreshStrip, 400);

/* ---------------- overview ---------------- */

const ovState = { data: null, filter: '', sort: 'problems' };

async function overview(params) {
  ovState.filter = params.get('filter') || '';
  const [groups, data] = await Promise.all([api('GET', '/proxy-groups'), loadFleet()]);
  ovState.data = { ...data, groups: groups.items };
  if (!groups.items.length && !data.services.length) {
    setMain(`<div class="card" id="empty"><h2>Nothing configured yet</h2>
      <p>Holdfast serves Envoy configuration for <em>proxy groups</em> (a group is the <code>node.cluster</code> of its Envoys). The first steps:</p>
      <ol><li>create a proxy group: <code>POST /api/v1/proxy-groups {"name": "edge", "listener_port": 10000}</code></li>
      <li>a service in it: <code>POST /api/v1/services {"name": "cart", "proxy_group": "edge"}</code></li>
      <li>a fleet and its endpoints: <code>POST /api/v1/services/cart/fleets</code>, then <code>…/fleets/blue/endpoints</code></li>
      <li>point Envoy at the xDS address with <code>node.cluster: edge</code>.</li></ol>
      <p class="muted">README.md and api/openapi.yaml have the details.</p></div>`);
    fresh();
    return;
  }
  setMain(`<div class="toolbar"><input id="filter" type="search" placeholder="filter endpoints: name, port, fleet, state…" value="${esc(ovState.filter)}" aria-label="filter endpoints">
      <label>sort <select id="sort"><option value="problems">problems first</option><option value="id">by address</option><option value="health">by health</option></select></label></div>
    <div id="ov-body"></div>`);
  $('#sort').value = ovState.sort;
  const rerender = () => { ovState.filter = $('#filter').value; ovState.sort = $('#sort').value; renderOverview(); };
  $('#filter').oninput = rerender;
  $('#sort').onchange = rerender;
  renderOverview();
  fresh();
  if (params.get('show') === 'proxies' && $('#proxies')) $('#proxies').scrollIntoView();
  const reload = async () => {
    try {
      const [g, d] = await Promise.all([api('GET', '/proxy-groups'), loadFleet()]);
      ovState.data = { ...d, groups: g.items };
      renderOverview();
      fresh();
    } catch (e) { /* the banner says it */ }
  };
  state.liveListeners.add(debounce(reload, 300));
  every(3000, reload);
}

function matcher(filter) {
  const toks = filter.toLowerCase().split(/\s+/).filter(Boolean);
  if (!toks.length) return () => true;
  return (e) => {
    const words = [e.service, e.fleet, e.id, e.address, String(e.port), e.zone, e.admin_state, e.health].map((w) => String(w || '').toLowerCase());
    const full = `${e.service}/${e.fleet}/${e.id}`.toLowerCase();
    return toks.some((t) => full.includes(t) || words.some((w) => w.startsWith(t)));
  };
}

const SORTS = {
  problems: (a, b) => (problem(b) - problem(a)) || ((b.health === 'unhealthy') - (a.health === 'unhealthy')) || a.id.localeCompare(b.id, undefined, { numeric: true }),
  id: (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }),
  health: (a, b) => ['unhealthy', 'unknown', 'healthy'].indexOf(a.health) - ['unhealthy', 'unknown', 'healthy'].indexOf(b.health) || a.id.localeCompare(b.id, undefined, { numeric: true }),
};

function endpointRow(e) {
  const key = `${e.service}/${e.fleet}/${e.id}`;
  const v = (e.verdicts || []).map((x) => `${x.checker}: ${x.verdict}${x.reason ? ` (${x.reason})` : ''} at ${fmtTime(x.at)}`).join('; ') || 'no checker verdicts';
  /* why it is out: the reason its checkers gave (HAProxy-style: "HTTP 503 in 2 ms", "timeout after 1000 ms") */
  const why = (e.verdicts || []).filter((x) => x.verdict === 'unhealthy' && x.reason).map((x) => x.reason)[0];
  const btns = ['draining', 'disabled', 'active'].filter((s) => s !== e.admin_state)
    .map((s) => `<button class="small ep-act" data-to="${s}" data-key="${esc(key)}">${{ draining: 'Drain', disabled: 'Disable', active: 'Enable' }[s]}</button>`).join('');
  return `<tr class="ep${problem(e) ? ' problem' : ''}" data-ep="${esc(e.id)}"><td><input type="checkbox" class="sel" data-key="${esc(key)}" aria-label="select ${esc(e.id)}"></td>
    <td>${esc(e.id)}${e.zone ? ` <span class="muted">${esc(e.zone)}</span>` : ''}</td><td><span class="badge ${e.admin_state}">${e.admin_state}</span></td>
    <td><span class="badge ${e.health}" title="${esc(v)}">${e.health === 'unhealthy' ? 'evicted' : e.health}</span>${why ? ` <span class="muted small why">${esc(why)}</span>` : ''}</td><td class="ep-btns">${btns}</td></tr>`;
}

function fleetBlock(s, fl, eps, match) {
  const sorted = eps.filter(match).sort(SORTS[ovState.sort]);
  const filtering = ovState.filter.trim() !== '';
  const key = `${s.name}/${fl.name}`;
  const table = (rows) => `<div class="scroll"><table class="eps"><tr><th></th><th>endpoint</th><th>admin</th><th>health</th><th>actions</th></tr>${rows.map(endpointRow).join('')}</table></div>`;
  let body;
  if (!eps.length) body = '<p class="muted">No endpoints.</p>';
  else if (!sorted.length) body = `<p class="muted">No endpoint matches the filter (${eps.length} in this fleet).</p>`;
  else if (filtering || sorted.length <= 8) body = table(sorted.slice(0, 100)) + (sorted.length > 100 ? `<p class="muted">${sorted.length - 100} more: narrow the filter.</p>` : '');
  else {
    const probs = sorted.filter(problem);
    body = (probs.length ? table(probs.slice(0, 10)) + (probs.length > 10 ? `<p class="muted">and ${probs.length - 10} more with problems: filter to see them.</p>` : '')
      : '<p class="muted ok">No endpoint with a problem.</p>') +
      `<details data-key="all:${esc(key)}"><summary>all ${eps.length} endpoints</summary>${table(sorted)}</details>`;
  }
  return `<div class="fleet-eps" data-fleet="${esc(fl.name)}" data-service="${esc(s.name)}"><div class="fleet-head"><strong>${esc(fl.name)}</strong>
      <span class="actions bulk">${['draining', 'disabled', 'active'].map((to) => `<button class="small bulk-act" data-to="${to}" data-service="${esc(s.name)}" data-fleet="${esc(fl.name)}">${{ draining: 'Drain', disabled: 'Disable', active: 'Enable' }[to]} <span class="scope">whole fleet</span>…</button>`).join('')}</span></div>${body}</div>`;
}

function renderOverview() {
  const d = ovState.data;
  if (!d || !$('#ov-body')) return;
  const match = matcher(ovState.filter);
  let html = '';
  const nacks = d.proxies.filter((p) => Object.values(p.types).some((t) => t.last_nack && syncState(t).s === 'NACK'));
  if (nacks.length) {
    html += `<div class="nack-box" id="nacks"><strong>${plural(nacks.length, 'proxy', 'proxies')} rejected configuration</strong>` +
      nacks.map((p) => Object.entries(p.types).filter(([, t]) => syncState(t).s === 'NACK').map(([k, t]) =>
        `<div class="nack" data-proxy="${esc(p.id)}">${esc(p.id)} (${esc(p.proxy_group)}) rejected ${k.toUpperCase()} version ${esc(t.last_nack.version)}: <code>${esc(t.last_nack.error)}</code></div>`).join('')).join('') + '</div>';
  }
  for (const g of d.groups) {
    html += `<div class="card group"><h2>Proxy group ${esc(g.name)} <span class="muted">:${g.listener_port}</span></h2>`;
    for (const s of d.services.filter((x) => x.proxy_group === g.name)) {
      const a = s.affinity;
      const fleets = d.fleets[s.name] || [];
      html += `<div class="card service" data-service="${esc(s.name)}"><h3>${esc(s.name)}</h3>
        <div class="kv"><span class="muted">affinity</span><span>${esc(a.mode)}${a.mode !== 'none' ? ` · cookie <code>${esc(a.cookie_name)}</code> · TTL in force <strong class="ttl-in-force">${fmtDur(s.ttl_in_force_s)}</strong> (normal ${fmtDur(a.ttl_s)})` : ''}</span>
        <span class="muted">domains</span><span>${esc(s.domains.join(', ') || s.name)}</span></div>
        <div class="scroll"><table class="fleets"><tr><th>fleet</th><th>role</th><th>version</th><th>session format</th><th>serving</th><th>not active</th></tr>`;
      for (const f of fleets) {
        const eps = d.endpoints.filter((e) => e.service === s.name && e.fleet === f.name);
        const ok = eps.filter(serving).length;
        const ev = eps.filter((e) => e.health === 'unhealthy').length;
        const off = eps.filter((e) => e.admin_state !== 'active').length;
        html += `<tr data-fleet="${esc(f.name)}"><td>${esc(f.name)}</td><td><span class="badge ${f.role} role">${f.role}</span></td><td>${esc(f.version)}</td><td>${esc(f.session_format)}</td>
          <td><span class="hs ${f.role === 'active' && !ok ? 'bad' : ok < eps.length ? 'warn' : ''}">${ok} of ${eps.length}</span>${ev ? ` <span class="badge unhealthy">${ev} evicted</span>` : ''}</td><td>${off || ''}</td></tr>`;
      }
      html += '</table></div>';
      html += fleets.map((f) => fleetBlock(s, f, d.endpoints.filter((e) => e.service === s.name && e.fleet === f.name), match)).join('');
      html += `<div class="actions"><button class="plan" data-service="${esc(s.name)}">Blue-green deploy…</button></div></div>`;
    }
    html += '</div>';
  }
  html += proxiesCard(d);
  paint($('#ov-body'), html);
  const body = $('#ov-body');
  $$('button.plan', body).forEach((b) => { guard(b, 'operator'); b.onclick = () => { location.hash = '#/deployments/new?service=' + b.dataset.service; }; });
  $$('button.ep-act', body).forEach((b) => { guard(b, 'operator'); b.onclick = () => endpointAction(b, [b.dataset.key], b.dataset.to); });
  $$('button.bulk-act', body).forEach((b) => {
    guard(b, 'operator');
    b.onclick = () => {
      const sel = $$(`.fleet-eps[data-service="${CSS.escape(b.dataset.service)}"][data-fleet="${CSS.escape(b.dataset.fleet)}"] input.sel:checked`, body).map((i) => i.dataset.key);
      const all = d.endpoints.filter((e) => e.service === b.dataset.service && e.fleet === b.dataset.fleet).map((e) => `${e.service}/${e.fleet}/${e.id}`);
      endpointAction(b, sel.length ? [...new Set(sel)] : all, b.dataset.to, !sel.length);
    };
  });
  const scopes = () => $$('.fleet-eps', body).forEach((fe) => {
    const n = new Set($$('input.sel:checked', fe).map((i) => i.dataset.key)).size;
    $$('.scope', fe).forEach((sp) => { sp.textContent = n ? `${n} selected` : 'whole fleet'; });
  });
  $$('input.sel', body).forEach((i) => { i.onchange = () => { $$(`input.sel[data-key="${CSS.escape(i.dataset.key)}"]`, body).forEach((o) => { o.checked = i.checked; }); scopes(); }; });
  scopes();
  if (!writable()) lockActions();
}

const STATE_MEANS = {
  draining: 'stay in EDS as DRAINING: sessions pinned to them by cookie keep reaching them, new sessions go elsewhere',
  disabled: 'leave EDS: no traffic at all; sessions pinned to them move to other endpoints',
  active: 'go back into rotation and take new sessions',
};

/* Sets admin_state on the endpoints named by keys ("service/fleet/id"), after a confirmation
 * that names every endpoint that changes. */
async function endpointAction(btn, keys, to, wholeFleet = false) {
  const byKey = {};
  ovState.data.endpoints.forEach((e) => { byKey[`${e.service}/${e.fleet}/${e.id}`] = e; });
  const eps = keys.map((k) => byKey[k]).filter(Boolean);
  const change = eps.filter((e) => e.admin_state !== to);
  const same = eps.length - change.length;
  if (!change.length) {
    await confirmDialog('Nothing to change', `<p>${plural(eps.length, 'endpoint')} ${eps.length === 1 ? 'is' : 'are'} already ${to}.</p>`, 'OK');
    return;
  }
  const where = [...new Set(change.map((e) => `${e.service}/${e.fleet}`))].join(', ');
  const serve = ovState.data.endpoints.filter((e) => where.split(', ').includes(`${e.service}/${e.fleet}`));
  const left = serve.filter((e) => (change.includes(e) ? to === 'active' && e.health !== 'unhealthy' : serving(e))).length;
  const verb = { draining: 'Drain', disabled: 'Disable', active: 'Enable' }[to];
  const ok = await confirmDialog(`${verb} ${plural(change.length, 'endpoint')} of ${where}?`,
    `<p>${wholeFleet ? '<strong>The whole fleet:</strong> ' : ''}${plural(change.length, 'endpoint')} ${change.length === 1 ? 'goes' : 'go'} to <strong>${to}</strong> and ${STATE_MEANS[to]}:</p>
     <ul class="change-list">${change.slice(0, 12).map((e) => `<li><code>${esc(e.id)}</code> ${e.admin_state} → ${to}</li>`).join('')}${change.length > 12 ? `<li>… and ${change.length - 12} more</li>` : ''}</ul>
     ${same ? `<p class="muted">${plural(same, 'endpoint')} already ${to}: left as ${same === 1 ? 'it is' : 'they are'}.</p>` : ''}
     <p>${where} keeps <strong>${left} of ${serve.length}</strong> endpoints serving.${left === 0 ? ' <strong class="error">Nothing will serve new sessions.</strong>' : ''}</p>`,
    `${verb} ${plural(change.length, 'endpoint')}`, to !== 'active');
  if (!ok) return;
  await act(btn, async () => {
    const failed = [];
    for (const e of change) {
      try {
        await api('PATCH', `/services/${encodeURIComponent(e.service)}/fleets/${encodeURIComponent(e.fleet)}/endpoints/${encodeURIComponent(e.id)}`, { admin_state: to });
      } catch (err) {
        failed.push(`${e.id}: ${err.message}`);
        if (err.status === 0) break;
      }
    }
    if (failed.length) throw new Error(`${failed.length} not changed: ${failed.join('; ')}`);
  });
}

function proxiesCard(d) {
  const byGroup = {};
  d.proxies.forEach((p) => { (byGroup[p.proxy_group || '(none)'] = byGroup[p.proxy_group || '(none)'] || []).push(p); });
  let html = '<div class="card" id="proxies"><h2>Connected proxies</h2>';
  if (!d.proxies.length) html += '<p class="muted">No proxy is connected. Envoys connect to the xDS address with <code>node.cluster</code> set to a proxy group.</p>';
  for (const [g, ps] of Object.entries(byGroup).sort()) {
    const n = ps.filter(proxyInSync).length;
    html += `<h3 class="pgroup" data-group="${esc(g)}">${esc(g)} <span class="insync ${n === ps.length ? 'ok' : 'bad'}">in sync ${n} of ${ps.length}</span></h3>
      <div class="scroll"><table class="proxies"><tr><th>node</th><th>kind</th><th>agent</th><th>CDS</th><th>EDS</th><th>LDS</th><th>RDS</th></tr>` +
      ps.map((p) => `<tr data-proxy="${esc(p.id)}"><td><a href="#/proxies/${encodeURIComponent(p.id)}" class="proxy-config" title="what this proxy was sent">${esc(p.id)}</a>${(p.warnings || []).map((w) => `<div class="warn-box small">${esc(typeof w === 'string' ? w : w.message || JSON.stringify(w))}</div>`).join('')}</td><td>${p.kind} · ${p.mode}</td><td>${esc(p.user_agent)}</td>` +
        ['cds', 'eds', 'lds', 'rds'].map((k) => `<td class="sync" data-type="${k}">${syncBadge(p.types[k])}</td>`).join('') + '</tr>').join('') + '</table></div>';
  }
  return html + '<p class="muted small">SYNCED: ACKed the current version · PENDING: sent, not ACKed yet (for how long) · NACK: rejected · STALE: behind the current configuration. Hover a state for its versions.</p></div>';
}

/* What one proxy was last sent, per type, with the versions it ACKed or NACKed (GET
 * /api/v1/proxies/{node_id}/config): a NACK is traced to the resources that caused it. */
async function proxyConfigPage(id) {
  const d = await api('GET', `/proxies/${encodeURIComponent(id)}/config`);
  let html = `<div class="card" id="proxy-config"><h2>Configuration sent to ${esc(d.id)}</h2><p class="muted">${esc(d.kind)} · ${esc(d.mode)} · group ${esc(d.proxy_group || '(none)')} · <a href="#/">back to the overview</a></p>`;
  for (const [k, t] of Object.entries(d.types)) {
    if (!t.subscribed && !t.resources.length) continue;
    const nack = t.last_nack ? `<div class="nack">NACK of version ${esc(t.last_nack.version)} at ${fmtTime(t.last_nack.at)}: <code>${esc(t.last_nack.error)}</code></div>` : '';
    html += `<h3 data-type="${k}">${k.toUpperCase()} <span class="muted small">sent ${esc(t.sent_version || '–')} · ACKed ${esc(t.acked_version || '–')}</span></h3>${nack}` +
      t.resources.map((r) => `<details class="res"><summary>${esc(r.name)} <span class="muted small">${esc(r.version)}</span></summary><div class="scroll"><pre>${esc(r.resource ? JSON.stringify(r.resource, null, 2) : '(this version is no longer in the current configuration)')}</pre></div></details>`).join('');
  }
  $('#main').innerHTML = html + '</div>';
}

/* ---------------- deployments ---------------- */

async function deploymentsList() {
  const deps = await api('GET', '/deployments');
  setMain(`<div class="card"><h2>Deployments</h2><div class="actions"><button class="primary" id="new">Plan a blue-green deployment…</button></div>
    <div class="scroll"><table><tr><th>id</th><th>service</th><th>from → to</th><th>state</th><th>created</th></tr>${deps.items.slice().reverse().map((d) =>
      `<tr><td><a href="#/deployments/${d.id}">${d.id}</a></td><td>${esc(d.service)}</td><td>${esc(d.from_fleet)} → ${esc(d.to_fleet)}</td><td><span class="badge ${d.state}">${d.state}</span></td><td>${fmtDate(d.created_at)}</td></tr>`).join('') || '<tr><td colspan="5" class="muted">No deployment yet: plan one from a service on the overview.</td></tr>'}</table></div></div>`);
  fresh();
  guard($('#new'), 'operator').onclick = () => { location.hash = '#/deployments/new'; };
  state.liveListeners.add(debounce(route, 300));
}

async function planForm(params) {
  const services = (await api('GET', '/services')).items;
  if (!services.length) {
    setMain('<div class="card" id="plan-empty"><h2>Plan a blue-green deployment</h2><p>There is no service to deploy yet. A blue-green deployment moves a service from its active fleet to a standby fleet: create the service and both fleets first (see the overview).</p></div>');
    fresh();
    return;
  }
  const pick = params.get('service') || services[0].name;
  $('#main').innerHTML = `<div class="card"><h2>Plan a blue-green deployment</h2>
    <form class="grid" id="plan">
      <label for="svc">service</label><select id="svc">${services.map((s) => `<option ${s.name === pick ? 'selected' : ''}>${esc(s.name)}</option>`).join('')}</select>
      <label for="to">to fleet</label><select id="to"></select>
      <label for="lowered">lowered cookie TTL</label><input id="lowered" class="dur" inputmode="text" placeholder="e.g. 5m (default min(5 min, TTL))">
      <label for="lead">lead before cutover</label><input id="lead" class="dur" inputmode="text" placeholder="e.g. 1h (default 2 × TTL)">
      <label for="threshold">tail threshold (%)</label><input id="threshold" type="number" step="0.1" min="0.1" max="5" placeholder="default 2">
      <label for="factor">deadline (× lowered TTL)</label><input id="factor" type="number" step="0.5" min="1" max="10" placeholder="default 3">
      <label for="force">accept a short lead</label><input id="force" type="checkbox">
    </form><p class="muted" id="plan-help"></p>
    <div id="preview"></div>
    <div class="actions"><button id="plan-check">Preview</button><button class="primary" id="plan-go">Plan</button></div></div>`;
  fresh();
  const fill = async () => {
    const svc = services.find((s) => s.name === $('#svc').value);
    const fl = (await api('GET', `/services/${svc.name}/fleets`)).items;
    $('#to').innerHTML = fl.filter((f) => f.role === 'standby' || f.role === 'retired').map((f) => `<option>${esc(f.name)}</option>`).join('');
    const active = fl.find((f) => f.role === 'active');
    $('#plan-help').textContent = `Moves ${svc.name} from ${active ? active.name : '(no active fleet)'}; normal cookie TTL ${fmtDur(svc.affinity.ttl_s)}.`;
    state.planFleets = fl;
    state.planService = svc;
  };
  $('#svc').onchange = fill;
  await fill();
  const planBody = () => {
    const body = { service: $('#svc').value, to_fleet: $('#to').value };
    const num = (id, key, f = parseInt) => { if ($(id).value !== '') body[key] = f($(id).value, 10); };
    for (const [id, key] of [['#lowered', 'lowered_ttl_s'], ['#lead', 'lead_s']]) {
      if ($(id).value.trim() === '') continue;
      const secs = parseDur($(id).value);
      if (secs === null) throw new ApiError(422, null, `${$(id).previousElementSibling.textContent}: a duration like 300, 90s, 5m or 1h`);
      body[key] = secs;
    } num('#threshold', 'tail_threshold_pct', parseFloat); num('#factor', 'deadline_factor', parseFloat);
    if ($('#force').checked) body.force = true;
    return body;
  };
  $('#plan-check').onclick = (e) => act(e.target, () => planPreview(planBody()));
  guard($('#plan-go'), 'operator').onclick = (e) => act(e.target, async () => {
    const warn = await planPreview(planBody());
    if (warn.length && !(await confirmDialog('Plan despite the warnings?', warn.map((w) => `<p>${esc(w)}</p>`).join(''), 'Plan anyway'))) return;
    const d = await api('POST', '/deployments', planBody());
    location.hash = '#/deployments/' + d.id;
  });
}

/* What the plan will do, before it is created: the durations it implies and a capacity check of
 * the fleet that takes over (the server's defaults, as api/openapi.yaml documents them). */
async function planPreview(body) {
  const svc = state.planService;
  const fl = state.planFleets || [];
  const from = fl.find((f) => f.role === 'active');
  const to = fl.find((f) => f.name === body.to_fleet);
  if (!to) throw new Error('choose the fleet to deploy to (a standby or retired fleet)');
  const eps = (await api('GET', '/health')).endpoints.filter((e) => e.service === svc.name);
  const count = (f) => (f ? eps.filter((e) => e.fleet === f.name && serving(e)).length : 0);
  const total = (f) => (f ? eps.filter((e) => e.fleet === f.name).length : 0);
  const ttl = svc.affinity.ttl_s;
  const lowered = body.lowered_ttl_s || Math.min(300, ttl);
  const lead = body.lead_s !== undefined ? body.lead_s : 2 * ttl;
  const formatChange = from && to.session_format !== from.session_format;
  const thr = body.tail_threshold_pct || (formatChange ? 1 : 2);
  const factor = body.deadline_factor || 3;
  const warn = [];
  if (count(to) === 0) warn.push(`${to.name} has no endpoint that can serve (${total(to)} in all): cutting over would send every new session nowhere.`);
  else if (from && count(to) < count(from)) warn.push(`${to.name} has ${plural(count(to), 'serving endpoint')} against ${count(from)} in ${from.name}: it takes all the traffic with less capacity.`);
  if (formatChange) warn.push(`The session format changes (${from.session_format} → ${to.session_format}): sessions that cross versions may fail.`);
  if (lead < ttl && !body.force) warn.push(`A lead of ${fmtDur(lead)} is shorter than the normal TTL (${fmtDur(ttl)}): the server refuses it unless "accept a short lead" is ticked.`);
  $('#preview').innerHTML = `<div class="kv" id="preview-figures"><span class="muted">moves</span><span>${esc(svc.name)}: ${esc(from ? from.name : '—')} (${count(from)} of ${total(from)} serving) → ${esc(to.name)} (${count(to)} of ${total(to)} serving)</span>
    <span class="muted">cookie TTL</span><span>${fmtDur(ttl)} → ${fmtDur(lowered)} during the deployment</span>
    <span class="muted">cutover unlocks</span><span>${fmtDur(lead)} after the TTL is lowered</span>
    <span class="muted">drain</span><span>ends when the tail stays under ${thr} %, at the latest ${fmtDur(factor * lowered)} after cutover</span></div>` +
    (warn.length ? warn.map((w) => `<div class="warn-box capacity">${esc(w)}</div>`).join('') : '<p class="ok">No capacity or format problem found.</p>');
  return warn;
}

const STEPS = ['planned', 'ttl_lowered', 'draining', 'completed'];

async function deploymentPage(id) {
  const d = await api('GET', '/deployments/' + id);
  state.deployment = d;
  const stepIdx = STEPS.indexOf(d.state === 'rolling_back' ? 'draining' : d.state);
  let html = `<div class="card" id="deployment" data-state="${d.state}"><h2>${esc(d.service)}: ${esc(d.from_fleet)} → ${esc(d.to_fleet)} <span class="badge ${d.state}" id="state">${d.state}</span></h2>
    <div class="steps">${STEPS.map((s, i) => `<span class="${i < stepIdx || d.state === 'completed' ? 'done' : i === stepIdx ? 'now' : ''}">${i + 1}. ${{ planned: 'plan', ttl_lowered: 'lower TTL', draining: 'cut over & drain', completed: 'finish' }[s]}</span>`).join('')}</div>`;
  html += d.warnings.map((w) => `<div class="warn-box">${esc(w)}</div>`).join('');
  html += `<div class="kv"><span class="muted">cookie TTL</span><span>normal ${fmtDur(d.normal_ttl_s)}, lowered ${fmtDur(d.lowered_ttl_s)}</span>
    <span class="muted">tail threshold</span><span>${d.tail_threshold_pct} %${d.session_format_change && d.tail_threshold_pct === 1 ? ' (the default when the session format changes)' : ''}</span>
    <span class="muted">deadline</span><span>${d.deadline_at ? fmtTime(d.deadline_at) : `${d.deadline_factor} × lowered TTL after cutover`}</span></div>`;
  html += '<div id="step"></div></div>';
  if (d.tail && d.cutover_at) html += `<div class="card"><h3>Affinity tail: share of requests still reaching <span id="draining">${esc(d.draining_fleet || (d.state === 'rolled_back' ? d.to_fleet : d.from_fleet))}</span></h3>
      <div id="tail-now" class="countdown"></div><div id="eta" class="muted"></div>
      <div class="actions"><label><input type="checkbox" id="logscale" checked> log scale</label></div><div id="chart"></div></div>`;
  setMain(html);
  fresh();
  renderStep(d);
  if (d.tail && d.cutover_at) renderChart(d);
  const refresh = debounce(route, 200); /* re-render through the router: old timers go */
  state.liveListeners.add((ev) => { if (ev.object === 'deployments/' + id) refresh(); });
  if (['draining', 'rolling_back'].includes(d.state)) every(1000, async () => {
    const n = await api('GET', '/deployments/' + id).catch(() => null);
    if (n && n.state !== d.state) refresh(); else if (n) { updateChart(n); fresh(); }
  });
}

function renderStep(d) {
  const step = $('#step');
  const btn = (cls, label, id) => `<button class="${cls}" id="${id}">${label}</button>`;
  const post = (action, body) => api('POST', `/deployments/${d.id}/${action}`, body);
  if (d.state === 'planned') {
    step.innerHTML = `<p>Step 2 pushes the lowered cookie TTL (${fmtDur(d.normal_ttl_s)} → ${fmtDur(d.lowered_ttl_s)}) to every proxy now. Cookies already issued keep their old TTL, so cutover unlocks ${fmtDur(d.lead_s)} later.</p>
      <div class="actions">${btn('primary', 'Lower TTL…', 'lower')}${btn('', 'Cancel deployment…', 'abort')}</div>`;
    guard($('#lower'), 'operator').onclick = (e) => confirmDialog('Lower the cookie TTL?', `Every proxy gets a ${fmtDur(d.lowered_ttl_s)} TTL for <code>${esc(d.service)}</code> cookies (now ${fmtDur(d.normal_ttl_s)}). Cutover unlocks in ${fmtDur(d.lead_s)}.`, 'Lower TTL')
      .then((ok) => ok && act(e.target, () => post('lower-ttl')));
  } else if (d.state === 'ttl_lowered') {
    step.innerHTML = `<p>Cutover unlocks at ${fmtTime(d.cutover_unlocks_at)}: <span class="countdown" id="countdown"></span></p>
      ${d.session_format_change ? '<label><input type="checkbox" id="ack"> I acknowledge the session format change</label><br>' : ''}
      <label><input type="checkbox" id="force"> Cut over before it unlocks (cookies issued before the TTL was lowered may still pin sessions to ${esc(d.from_fleet)})</label>
      <div class="actions">${btn('primary', 'Cut over…', 'cutover')}${btn('', 'Cancel deployment…', 'abort')}</div>`;
    const tick = () => {
      if (!$('#countdown')) return;
      const s = secondsUntil(d.cutover_unlocks_at);
      $('#countdown').textContent = s > 0 ? `${s} s` : 'unlocked';
      $('#cutover').disabled = !can('operator') || !writable() || (s > 0 && !$('#force').checked) || (d.session_format_change && !$('#ack').checked);
    };
    tick();
    every(500, tick);
    $('#force').onchange = tick;
    if ($('#ack')) $('#ack').onchange = tick;
    guard($('#cutover'), 'operator').onclick = (e) => confirmDialog(`Cut ${d.service} over from ${d.from_fleet} to ${d.to_fleet}?`,
      `<p><strong>${esc(d.to_fleet)}</strong> becomes active: every new session goes there.</p><p><strong>${esc(d.from_fleet)}</strong> drains: sessions pinned by a cookie keep reaching it until their cookie expires; it is retired when the tail stays under ${d.tail_threshold_pct} % (deadline ${d.deadline_factor} × ${fmtDur(d.lowered_ttl_s)}).</p>`, `Cut over to ${d.to_fleet}`)
      .then((ok) => ok && act(e.target, () => post('cutover', { force: $('#force').checked, acknowledge_format_change: $('#ack') ? $('#ack').checked : false })));
  } else if (d.state === 'draining' || d.state === 'rolling_back') {
    const to = d.state === 'draining' ? d.to_fleet : d.from_fleet;
    step.innerHTML = `<p>${esc(to)} is active; ${esc(d.draining_fleet)} drains. It finishes by itself when the tail stays under ${d.tail_threshold_pct} % for 3 samples, or at ${fmtTime(d.deadline_at)}.</p>
      <div class="actions">${btn('', 'Finish now…', 'finish')}${btn('', 'Extend…', 'extend')}${d.state === 'draining' ? btn('danger', 'Roll back…', 'rollback') : ''}</div>`;
    guard($('#finish'), 'operator').onclick = (e) => confirmDialog('Finish now?', `${esc(d.draining_fleet)} leaves every proxy now${d.state === 'draining' ? ' and is retired' : ''}; sessions still pinned to it are re-pinned (the current tail is shown on the chart). The normal TTL (${d.normal_ttl_s} s) comes back.`, 'Finish now', true)
      .then((ok) => ok && act(e.target, () => post('finish')));
    guard($('#extend'), 'operator').onclick = (e) => confirmDialog('Extend the deadline?', `The deadline moves ${fmtDur(d.lowered_ttl_s)} later (from ${fmtTime(d.deadline_at)}).`, 'Extend')
      .then((ok) => ok && act(e.target, () => post('extend')));
    if ($('#rollback')) guard($('#rollback'), 'operator').onclick = (e) => confirmDialog(`Roll ${d.service} back to ${d.from_fleet}?`, `<strong>${esc(d.from_fleet)}</strong> becomes active again; sessions pinned to <strong>${esc(d.to_fleet)}</strong> drain back the same way and it returns to standby.`, `Roll back to ${d.from_fleet}`, true)
      .then((ok) => ok && act(e.target, () => post('rollback')));
  } else {
    step.innerHTML = `<p>Finished ${fmtTime(d.finished_at)} by <strong id="reason">${esc(d.finish_reason)}</strong>${d.final_tail_pct !== null ? `, tail ${d.final_tail_pct.toFixed(2)} %` : ''}.</p>`;
  }
  if ($('#abort')) guard($('#abort'), 'operator').onclick = (e) => confirmDialog('Cancel the deployment?', `Nothing has reached ${esc(d.to_fleet)}: the deployment ends, the cookie TTL of ${esc(d.service)} goes back to ${fmtDur(d.normal_ttl_s)}, and no fleet changes role.`, 'Cancel deployment', true)
    .then((ok) => ok && act(e.target, () => post('abort')));
}

/* The chart: tail samples, the threshold, and the fitted exponential decay, on one timeline
 * from the first cutover (seconds): after a rollback the forward drain stays, and the drain back
 * is its own series. A log axis (default) keeps a 1-2 % threshold visible; the linear axis is
 * zoomed to the data. A pause in the samples (an outage) is drawn as a gap. */
function chartData(d) {
  const back = ['rolling_back', 'rolled_back'].includes(d.state);
  const cut = new Date(d.cutover_at).getTime() / 1000; /* the rollback's time after one */
  const t0 = d.tail.length ? Math.min(cut, new Date(d.tail[0].t).getTime() / 1000) : cut;
  const xs = d.tail.map((s) => new Date(s.t).getTime() / 1000 - t0);
  const steps = xs.slice(1).map((x, i) => x - xs[i]).sort((p, q) => p - q);
  const step = steps.length ? steps[Math.floor(steps.length / 2)] : 1;
  const X = [], Fw = [], Bk = [], T = [], F = [], S = [];
  const log = !$('#logscale') || $('#logscale').checked;
  const floor = (v) => (log ? Math.max(v, 0.01) : v);
  const fitOrigin = d.fit && d.fit.origin ? new Date(d.fit.origin).getTime() / 1000 - t0 : cut - t0;
  const push = (x, s) => {
    const isBack = back && x >= cut - t0 - 0.001;
    X.push(x); T.push(d.tail_threshold_pct); S.push(s);
    Fw.push(s && !isBack ? floor(s.pct) : null);
    Bk.push(s && isBack ? floor(s.pct) : null);
    F.push(s && d.fit && x >= fitOrigin ? floor(d.fit.pct_at_origin * Math.exp(-d.fit.rate_per_s * (x - fitOrigin))) : null);
  };
  xs.forEach((x, i) => {
    if (i > 0 && x - xs[i - 1] > Math.max(3 * step, 2)) push((x + xs[i - 1]) / 2, null); /* a gap */
    push(x, d.tail[i]);
  });
  state.chartSamples = S;
  state.chartRollbackX = back ? cut - t0 : null;
  if ($('#chart')) $('#chart').dataset.gaps = S.filter((x) => x === null).length;
  return back ? [X, Fw, Bk, T, F] : [X, Fw, T, F];
}

function renderChart(d) {
  const el = $('#chart');
  const log = $('#logscale').checked;
  const ymax = Math.max(3 * d.tail_threshold_pct, ...d.tail.map((s) => s.pct)) * 1.1;
  const opts = {
    width: Math.max(280, Math.min(1100, el.clientWidth || 900)), height: 300,
    scales: { x: { time: false }, y: log ? { distr: 3, log: 10, range: [0.01, 100] } : { range: [0, Math.min(100, ymax)] } },
    axes: [{ label: 'seconds since cutover' }, { label: '% of requests' + (log ? ' (log)' : ''), size: 60 }],
    series: [{}, { label: `tail % (${d.from_fleet})`, stroke: '#2563eb', width: 2, points: { show: true }, spanGaps: false },
      ...(['rolling_back', 'rolled_back'].includes(d.state) ? [{ label: `after rollback (${d.to_fleet})`, stroke: '#c2410c', width: 2, points: { show: true }, spanGaps: false }] : []),
      { label: 'threshold', stroke: '#b91c1c', dash: [6, 4], points: { show: false } }, { label: 'fitted decay', stroke: '#15803d', dash: [2, 3], points: { show: false } }],
    hooks: { draw: [(u) => {
      if (state.chartRollbackX === null || state.chartRollbackX === undefined) return;
      const x = u.valToPos(state.chartRollbackX, 'x', true);
      const c = u.ctx;
      c.save(); c.strokeStyle = '#c2410c'; c.setLineDash([4, 4]); c.beginPath();
      c.moveTo(x, u.bbox.top); c.lineTo(x, u.bbox.top + u.bbox.height); c.stroke();
      c.fillStyle = '#c2410c'; c.font = `${12 * devicePixelRatio}px system-ui`; c.fillText('rollback', x + 4, u.bbox.top + 14 * devicePixelRatio);
      c.restore();
    }],
    setCursor: [(u) => {
      const i = u.cursor.idx;
      const s = i === null || i === undefined ? null : state.chartSamples[i];
      const out = $('#chart-hover');
      if (!out) return;
      out.textContent = s ? `${fmtTime(s.t)} · ${s.pct.toFixed(2)} %` + (s.total_requests !== undefined ? ` · ${s.old_requests} of ${s.total_requests} requests` : '') +
        (s.reporters !== undefined ? ` · from ${s.reporters} of ${s.connected_proxies >= 0 ? s.connected_proxies : '?'} connected proxies` : '') : (i !== null && i !== undefined ? 'no samples here (gap)' : '');
    }] },
  };
  el.innerHTML = '';
  const chart = new uPlot(opts, chartData(d), el);
  el.insertAdjacentHTML('beforeend', '<div id="chart-hover" class="muted small"></div>');
  state.charts.push(chart);
  state.chart = chart;
  $('#logscale').onchange = () => { state.charts = state.charts.filter((c) => c !== chart); chart.destroy(); renderChart(state.deployment); };
  updateChart(d);
}

function updateChart(d) {
  state.deployment = d;
  if (state.chart && d.tail) state.chart.setData(chartData(d));
  const last = d.tail && d.tail.length ? d.tail[d.tail.length - 1] : null; /* whose reports (issue 13) */
  const from = last && last.reporters ? ` · from ${last.reporters} of ${last.connected_proxies >= 0 ? last.connected_proxies : '?'} connected proxies` : '';
  if ($('#tail-now')) $('#tail-now').textContent = d.tail_pct !== null && d.tail_pct !== undefined ? `${d.tail_pct.toFixed(2)} %${from}` : 'no traffic measured yet';
  if ($('#eta')) $('#eta').textContent = d.eta ? `fitted half-life ${d.fit.half_life_s.toFixed(1)} s · ETA to ${d.tail_threshold_pct} %: ${fmtTime(d.eta)} · deadline ${fmtTime(d.deadline_at)}` : `deadline ${fmtTime(d.deadline_at)}`;
}

/* ---------------- rolling restarts ---------------- */

async function restartsPage() {
  const [services, restarts] = await Promise.all([api('GET', '/services'), api('GET', '/restarts')]);
  const live = restarts.items.filter((r) => r.state === 'running');
  const waiting = new Set((await Promise.all(live.map((r) => api('GET', '/restarts/' + r.id)))).filter((r) => r.batch_list.some((b) => b.state === 'ready')).map((r) => r.id));
  setMain(`<div class="card"><h2>Plan a rolling restart</h2>
    <form class="grid" id="rplan">
      <label for="rsvc">service</label><select id="rsvc">${services.items.map((s) => `<option>${esc(s.name)}</option>`).join('')}</select>
      <label for="rfleet">fleet</label><select id="rfleet"></select>
      <label for="ravg">average connection length (s)</label><input id="ravg" type="number" min="1" value="2700">
      <label for="rdisc">disconnect budget (%)</label><input id="rdisc" type="number" step="0.5" min="1" max="10" value="5">
      <label for="rdrain">max out of rotation (%)</label><input id="rdrain" type="number" min="10" max="90" value="60">
      <label for="rrs">instance restart (s)</label><input id="rrs" type="number" min="1" value="60">
      <label for="rhook">webhook URL</label><input id="rhook" type="text" placeholder="http://10.0.0.5:8080/restart (optional)">
    </form>
    <div class="actions"><button id="rplan-go">Plan (dry run)</button><button class="primary" id="rstart">Start…</button></div>
    <div id="rplan-out"></div></div>
    <div class="card"><h2>Rolling restarts</h2><div class="scroll"><table id="restarts"><tr><th>id</th><th>service / fleet</th><th>batches</th><th>state</th><th>started</th></tr>${restarts.items.slice().reverse().map((r) =>
      `<tr><td><a href="#/restarts/${r.id}">${r.id}</a></td><td>${esc(r.service)} / ${esc(r.fleet)}</td><td>${r.batches} × ${r.batch_size}</td><td>${waiting.has(r.id) ? '<span class="badge waiting">waiting on you</span>' : `<span class="badge ${r.state}">${r.state}</span>`}</td><td>${fmtDate(r.created_at)}</td></tr>`).join('') || '<tr><td colspan="5" class="muted">No rolling restart yet.</td></tr>'}</table></div></div>`);
  fresh();
  if (!services.items.length) {
    $('#rplan-out').innerHTML = '<p class="muted">No service yet: a rolling restart needs a service with a fleet of endpoints.</p>';
    $$('#rplan-go, #rstart').forEach((b) => { b.disabled = true; });
    return;
  }
  const fill = async () => {
    const fl = (await api('GET', `/services/${$('#rsvc').value}/fleets`)).items;
    $('#rfleet').innerHTML = fl.map((f) => `<option ${f.role === 'active' ? 'selected' : ''}>${esc(f.name)}</option>`).join('');
  };
  $('#rsvc').onchange = fill;
  if (services.items.length) await fill();
  const body = (dry) => {
    const b = { service: $('#rsvc').value, fleet: $('#rfleet').value, dry_run: dry,
      avg_connection_s: parseInt($('#ravg').value, 10), max_disconnect_pct: parseFloat($('#rdisc').value),
      max_draining_pct: parseFloat($('#rdrain').value), restart_s: parseInt($('#rrs').value, 10) };
    if (!dry && $('#rhook').value) b.webhook_url = $('#rhook').value;
    return b;
  };
  $('#rplan-go').onclick = (e) => act(e.target, async () => {
    const p = await api('POST', '/restarts', body(true));
    state.restartPlan = p;
    $('#rplan-out').innerHTML = `<div class="kv" id="plan-figures"><span class="muted">batches</span><span>${plural(p.batches, 'batch', 'batches')} of ${plural(p.batch_size, 'endpoint')}</span>
      <span class="muted">drain window</span><span>${fmtDur(p.drain_window_s)}</span><span class="muted">a batch every</span><span>${fmtDur(p.interval_s)}</span>
      <span class="muted">predicted total</span><span id="plan-total">${fmtDur(p.total_s)}</span></div><p class="muted" id="plan-why">${esc(p.explanation)}</p>`;
  });
  guard($('#rstart'), 'operator').onclick = (e) => act(e.target, async () => {
    const p = await api('POST', '/restarts', body(true));
    const ok = await confirmDialog(`Restart ${$('#rsvc').value} / ${$('#rfleet').value}?`,
      `<p>${plural(p.batches, 'batch', 'batches')} of ${plural(p.batch_size, 'endpoint')} of <code>${esc($('#rfleet').value)}</code> go DRAINING one after another, one every ${fmtDur(p.interval_s)} (drain window ${fmtDur(p.drain_window_s)}); predicted total ${fmtDur(p.total_s)}.</p>
       <p>${$('#rhook').value ? `The webhook <code>${esc($('#rhook').value)}</code> restarts each batch.` : 'No webhook: each drained batch waits for <strong>you</strong> to mark it restarted (or for the health checks to see it restart).'}</p>`, 'Start');
    if (!ok) return;
    await (async () => { const r = await api('POST', '/restarts', body(false)); location.hash = '#/restarts/' + r.id; })();
  });
}

async function restartPage(id) {
  const r = await api('GET', '/restarts/' + id);
  const live = ['running', 'paused'].includes(r.state);
  const done = r.batch_list.filter((b) => b.state === 'done').length;
  const ready = r.batch_list.filter((b) => b.state === 'ready');
  const left = r.batches - done;
  const eta = live && r.state === 'running' ? new Date(Date.now() + Math.max(0, left - ready.length) * r.interval_s * 1000 + r.drain_window_s * 1000) : null;
  setMain(`<div class="card" id="restart" data-state="${r.state}"><h2>Rolling restart of ${esc(r.service)} / ${esc(r.fleet)} <span class="badge ${ready.length && r.state === 'running' ? 'waiting' : r.state}" id="rstate">${ready.length && r.state === 'running' ? 'waiting on you' : r.state}</span></h2>
    ${ready.length && r.state === 'running' ? `<div class="warn-box" id="rwait">${plural(ready.length, 'batch', 'batches')} drained and waiting for the instances to be restarted: restart them, then “Mark restarted”.</div>` : ''}
    <div class="kv"><span class="muted">progress</span><span id="rprogress">${done} of ${plural(r.batches, 'batch', 'batches')} done${eta ? ` · ETA about ${fmtTime(eta)} if nothing waits` : ''}</span>
      <span class="muted">batches</span><span>${plural(r.batches, 'batch', 'batches')} of ${plural(r.batch_size, 'endpoint')}, at most ${r.concurrent_batches} at once, one every ${fmtDur(r.interval_s)}</span>
      <span class="muted">drain window</span><span>${fmtDur(r.drain_window_s)}</span>
      <span class="muted">webhook</span><span>${esc(r.webhook_url) || '—'}</span></div>
    <div class="actions">${r.state === 'paused' ? '<button class="primary" id="rresume">Resume</button>' : '<button id="rpause">Pause</button>'}${ready.length > 1 ? '<button class="primary" id="rmarkall">Mark all restarted</button>' : ''}<button id="rabort">Abort…</button></div>
    <div class="scroll"><table id="batches"><tr><th>#</th><th>endpoints</th><th>state</th><th>draining since</th><th>ready</th><th>restarted</th><th>done</th><th>webhook</th></tr>${r.batch_list.map((b) =>
      `<tr data-batch="${b.n}"><td>${b.n}</td><td>${b.endpoints.map(esc).join(', ')}</td><td><span class="badge ${b.state}">${b.state}</span>${b.state === 'ready' ? ` <button class="restarted" data-n="${b.n}">Mark restarted</button>` : ''}</td><td>${fmtTime(b.started_at)}</td><td>${fmtTime(b.ready_at)}${b.drained_early ? ' <span class="muted" title="load reports showed no request in progress">(idle early)</span>' : ''}</td><td>${fmtTime(b.restarted_at)}</td><td>${fmtTime(b.done_at)}</td><td>${b.webhook_attempts ? (b.webhook_ok ? 'ok' : 'failed') + ` (${b.webhook_attempts})` : '—'}</td></tr>`).join('')}</table></div></div>`);
  fresh();
  const post = (what) => api('POST', `/restarts/${id}/${what}`);
  const refresh = debounce(route, 200);
  for (const [sel, action] of [['#rpause', 'pause'], ['#rresume', 'resume']]) {
    if ($(sel)) guard($(sel), 'operator').onclick = (e) => act(e.target, async () => { await post(action); refresh(); });
  }
  guard($('#rabort'), 'operator').onclick = (e) => confirmDialog('Abort the rolling restart?', 'Every endpoint of this restart goes back to active, whatever its batch was doing.', 'Abort', true)
    .then((ok) => ok && act(e.target, async () => { await post('abort'); refresh(); }));
  if (!live) document.querySelectorAll('#restart .actions button').forEach((b) => { b.disabled = true; });
  if ($('#rmarkall')) guard($('#rmarkall'), 'operator').onclick = (e) => act(e.target, async () => { for (const b of ready) await post(`batches/${b.n}/restarted`); refresh(); });
  document.querySelectorAll('button.restarted').forEach((b) => { guard(b, 'operator').onclick = (e) => act(e.target, async () => { await post(`batches/${b.dataset.n}/restarted`); refresh(); }); });
  state.liveListeners.add((ev) => { if (ev.object === 'restarts/' + id) refresh(); });
  if (live) every(2000, refresh);
}

/* ---------------- replicas ---------------- */

/* "4 s", "2 min 5 s": how long ago (or for how long) since t, on the server's clock. */
const ago = (t) => fmtDur(Math.max(0, (serverNow() - Date.parse(t)) / 1000));

/* What is wrong with the replicas, for the strip and the view: no leader (the engines wait),
 * replicas whose heartbeat is older than the lease. */
function replicaTrouble(rep) {
  return { leader: rep.items.find((r) => r.leader) || null, silent: rep.items.filter((r) => !r.alive) };
}

/* Every holdfast replica on the database (docs/ha.md): its addresses, heartbeat, which one leads
 * the engines and since when, and which one this page talks to. On SQLite, the one process. */
async function replicasPage() {
  const render = (rep) => {
    state.database = rep.database;
    const { leader, silent } = replicaTrouble(rep);
    const pg = rep.database === 'postgresql';
    let html = `<div class="card" id="replicas" data-database="${esc(rep.database)}"><h2>Replicas</h2>`;
    if (!pg) {
      html += '<p class="muted" id="replicas-note">One holdfast process on SQLite: it runs the engines (drains, restarts, health decisions). Several replicas need PostgreSQL (docs/ha.md).</p>';
    } else {
      html += `<p id="replicas-note">${plural(rep.items.length, 'replica')} on PostgreSQL${leader ? ` · <strong>${esc(leader.id)}</strong> leads the engines since ${fmtTime(leader.leader_since)} (${ago(leader.leader_since)} ago)` : ''}. This page talks to ${rep.items.some((r) => r.self) ? `<strong>${esc(rep.items.find((r) => r.self).id)}</strong>` : 'a replica not listed yet'}.</p>`;
      if (!leader) html += '<div class="warn-box" id="no-leader">No replica leads right now: deployments, restarts and health decisions wait until one takes the lead (within about 7 s of losing the last one).</div>';
      if (silent.length) html += `<div class="warn-box" id="silent">${plural(silent.length, 'replica has', 'replicas have')} not heartbeated within the 5 s lease: ${silent.map((r) => esc(r.id)).join(', ')}. A silent leader is replaced; proxies connected to a silent replica keep their last configuration.</div>`;
    }
    html += `<div class="scroll"><table><tr><th>replica</th><th>HTTP (REST, UI)</th><th>xDS</th><th>role</th><th>heartbeat</th><th>started</th></tr>${rep.items.map((r) =>
      `<tr class="replica${r.alive ? '' : ' problem'}" data-replica="${esc(r.id)}" data-leader="${r.leader}" data-self="${r.self}"><td>${esc(r.id)}${r.self ? ' <span class="badge self">this page</span>' : ''}</td>
        <td>${/^https?:\/\//.test(r.http_address) && !r.self ? `<a href="${esc(r.http_address)}/#/replicas">${esc(r.http_address)}</a>` : esc(r.http_address)}</td><td>${esc(r.xds_address)}</td>
        <td class="role">${r.leader ? `<span class="badge leader">leader</span> since ${fmtTime(r.leader_since)} <span class="muted">(${ago(r.leader_since)} ago)</span>` : '<span class="muted">serves, does not lead</span>'}</td>
        <td class="heartbeat"><span class="hs ${r.alive ? '' : 'bad'}">${r.alive ? '' : 'silent · '}${ago(r.heartbeat_at)} ago</span></td><td>${fmtTime(r.started_at)}</td></tr>`).join('')}</table></div>
      <p class="muted small">Every replica serves REST, this UI and xDS from its own snapshot; one leader runs the engines. A heartbeat older than the 5 s lease means the replica is gone or stuck.</p></div>`;
    setMain(html);
  };
  render(await api('GET', '/replicas'));
  fresh();
  every(2000, async () => {
    try {
      render(await api('GET', '/replicas'));
      fresh();
    } catch (e) { /* the banner says it; what was shown stays, marked stale */ }
  });
}

/* ---------------- events ---------------- */

/* severity of an audit action: red for failures and rejections, amber for what degrades */
function severity(e) {
  if (/nack|reject|rolled_back|abort|evict|unhealthy|fail|error/.test(e.action)) return 'sev-bad';
  if (/drain|disable|rollback|lower|restart|pause|cutover/.test(e.action)) return 'sev-warn';
  return 'sev-info';
}

/* the page of an event's object: deployments/ID, restarts/ID, services/NAME[/...] */
function objectLink(obj) {
  const m = /^(deployments|restarts)\/([^/]+)$/.exec(obj || '');
  if (m) return `#/${m[1]}/${m[2]}`;
  const s = /^services\/([^/]+)(?:\/fleets\/([^/]+))?/.exec(obj || '');
  if (s) return '#/?filter=' + encodeURIComponent(s[2] ? `${s[1]}/${s[2]}` : s[1]);
  return null;
}

async function eventsPage(params) {
  const services = (await api('GET', '/services')).items;
  /* deployments and restarts name their service in their record, not in the event's object */
  const owner = {};
  const owners = async () => {
    const [deps, rs] = await Promise.all([api('GET', '/deployments'), api('GET', '/restarts')]);
    deps.items.forEach((d) => { owner['deployments/' + d.id] = d.service; });
    rs.items.forEach((r) => { owner['restarts/' + r.id] = r.service; });
  };
  await owners();
  const serviceOf = (e) => owner[e.object] || ((/^services\/([^/]+)/.exec(e.object) || [])[1]) || null;
  setMain(`<div class="card"><h2>Events</h2><div class="toolbar">
      <label>service <select id="filter"><option value="">all</option>${services.map((s) => `<option>${esc(s.name)}</option>`).join('')}</select></label>
      <label>action <input id="faction" type="search" placeholder="e.g. deployment. or endpoint"></label></div>
    <div class="scroll"><table class="events" id="events"></table></div>
    <div class="actions"><button id="older">Older events</button><span class="muted" id="ev-count"></span></div></div>`);
  $('#filter').value = params.get('service') || '';
  let shown = [];
  let nextBefore = null;
  const render = () => {
    const rows = shown.slice().reverse().map((e) => {
      const link = objectLink(e.object);
      return `<tr class="ev ${severity(e)}" data-id="${e.id}" data-action="${esc(e.action)}"><td class="nowrap">${fmtDate(e.at)}</td><td><strong>${esc(e.action)}</strong></td><td>${link ? `<a href="${link}">${esc(e.object)}</a>` : esc(e.object)}</td><td>${esc(e.summary)}</td><td class="muted">${esc(e.actor)}</td></tr>`;
    }).join('');
    paint($('#events'), '<tr><th>when</th><th>action</th><th>object</th><th>what</th><th>who</th></tr>' + (rows || '<tr><td colspan="5" class="muted">No event matches.</td></tr>'));
    $('#ev-count').textContent = `${shown.length} shown${nextBefore === null ? ', the oldest included' : ''}`;
    $('#older').disabled = nextBefore === null || !state.online;
  };
  /* the newest matching events from the server, or (older) the page before what is shown */
  const load = async (older) => {
    const q = new URLSearchParams({ before: older ? nextBefore : 0, limit: 100 });
    if ($('#filter').value) q.set('service', $('#filter').value);
    if ($('#faction').value.trim()) q.set('action', $('#faction').value.trim());
    const page = await api('GET', '/events?' + q);
    shown = older ? page.items.concat(shown) : page.items;
    nextBefore = page.next_before;
    render();
    fresh();
  };
  await load(false);
  const reload = () => load(false).catch(() => {});
  $('#filter').onchange = reload;
  $('#faction').oninput = debounce(reload, 300);
  $('#older').onclick = async (e) => {
    e.target.disabled = true;
    await load(true).catch(() => {});
    render(); /* enables it again when there is more */
  };
  const matches = (e) => (!$('#filter').value || serviceOf(e) === $('#filter').value) && e.action.startsWith($('#faction').value.trim());
  state.liveListeners.add(async (e) => {
    if (/^(deployments|restarts)\//.test(e.object) && !owner[e.object]) await owners().catch(() => {});
    if (matches(e) && !shown.some((x) => x.id === e.id)) shown.push(e);
    render();
    fresh();
  });
}

/* ---------------- router ---------------- */

/* Forms are driven by their buttons; Enter must not submit them (the CSP forbids it anyway). */
document.addEventListener('submit', (e) => e.preventDefault());

/* Renders the view the hash names; keep (a live refresh or a reconnect) keeps what the operator
 * opened and where the page was scrolled. One at a time: a view still loading when the hash
 * changes again finishes first, so it cannot paint over the newer one. */
let routeQueue = Promise.resolve();
function route(keep) {
  routeQueue = routeQueue.then(() => renderRoute(keep)).catch((e) => console.error(e)); /* never stalls the queue */
  return routeQueue;
}

async function renderRoute(keep) {
  stopPage();
  if (keep !== true) state.painted = null;
  if (state.role === null) return;
  const [path, query] = location.hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  document.querySelectorAll('header nav a').forEach((a) => a.classList.toggle('active', (path || '/').startsWith('/' + a.dataset.nav) || (a.dataset.nav === 'overview' && (!path || path === '/'))));
  refreshStrip();
  try {
    if (!path || path === '/') await overview(params);
    else if (path === '/deployments') await deploymentsList();
    else if (path === '/deployments/new') await planForm(params);
    else if (path.startsWith('/deployments/')) await deploymentPage(path.split('/')[2]);
    else if (path === '/restarts') await restartsPage();
    else if (path.startsWith('/restarts/')) await restartPage(path.split('/')[2]);
    else if (path === '/events') await eventsPage(params);
    else if (path === '/replicas') await replicasPage();
    else if (path.startsWith('/proxies/')) await proxyConfigPage(decodeURIComponent(path.slice('/proxies/'.length)));
    else $('#main').innerHTML = '<p>Not found.</p>';
  } catch (e) {
    if (e.status === 0 || dbFailed(e)) {
      /* what was painted stays (marked stale); a view never shown says why it is empty */
      if (state.painted !== location.hash) {
        $('#main').innerHTML = e.status === 0 || state.dbDown ? unreachableCard() : `<div class="card"><p class="error">${esc(e.message)}</p></div>`;
      }
    } else if (e.status !== 401) {
      $('#main').innerHTML = `<div class="card"><p class="error">${esc(e.message)}</p></div>`;
    }
  }
}

function unreachableCard() {
  return `<div class="card" id="unreachable"><p class="error">${state.online ? 'holdfast cannot reach its database' : 'holdfast is unreachable'}: this page loads by itself when it is back.</p></div>`;
}

async function start() {
  try {
    const me = await api('GET', '/whoami');
    state.role = me.role;
    state.actor = me.actor;
    $('#who').textContent = `${me.actor} · ${me.role}`;
    $('#signout').hidden = !token();
  } catch (e) {
    if (e.status === 0 || dbFailed(e)) $('#main').innerHTML = unreachableCard();
    if (dbFailed(e)) {
      await dbCheck; /* the database failed once but is reachable (busy): try again */
      if (!state.dbDown && state.online) setTimeout(start, 1000);
    }
    return;
  }
  startStream();
  route();
}

$('#modal-cancel').onclick = () => closeModal(false);
$('#modal-confirm').onclick = () => closeModal(true);
document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !$('#modal').hidden) closeModal(false); });
$('#signout').onclick = signOut;
window.addEventListener('hashchange', () => route());
setInterval(() => { if (writable()) refreshStrip(); }, 5000);
start();
