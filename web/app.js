/*
 * Holdfast web UI. Plain JavaScript on the public REST API only: nothing here that the API
 * cannot do. The token (when tokens are in use) lives in sessionStorage and goes in the
 * Authorization header; there is no cookie, so no CSRF surface. Live updates come from the
 * audit log's server-sent events (read with fetch, so they carry the token), reconnecting.
 */
'use strict';

const API = '/api/v1';
const $ = (sel, el = document) => el.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const RANK = { viewer: 0, operator: 1, admin: 2 };

const state = { role: null, actor: null, liveListeners: new Set(), timers: [], charts: [] };

/* ---------------- API ---------------- */

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || ('HTTP ' + status));
    this.status = status;
    this.body = body;
  }
}

function token() { return sessionStorage.getItem('holdfast-token') || ''; }

async function api(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = 'Bearer ' + token();
  // holdfast refuses a change without a JSON content type (415), with or without a body.
  if (body !== undefined || method !== 'GET') headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    banner('Connection to holdfast lost — retrying…');
    throw new ApiError(0, null);
  }
  banner(null);
  const text = await r.text();
  const json = text ? JSON.parse(text) : null;
  if (r.status === 401) { signIn(json); throw new ApiError(401, json); }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

function banner(msg) {
  const b = $('#banner');
  b.hidden = !msg;
  b.textContent = msg || '';
}

/* ---------------- auth ---------------- */

function signIn(err) {
  stopPage();
  $('#main').innerHTML = `
    <div class="card" id="signin"><h2>Sign in</h2>
      <p class="muted">This holdfast uses API tokens. Paste one (<code>holdfast token create --role operator</code>).</p>
      ${err && token() ? '<p class="error">That token was refused.</p>' : ''}
      <div class="actions"><input id="token" type="password" size="60" placeholder="hf_…">
      <button class="primary" id="signin-go">Sign in</button></div></div>`;
  $('#signin-go').onclick = () => { sessionStorage.setItem('holdfast-token', $('#token').value.trim()); start(); };
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
async function liveEvents() {
  let backoff = 500;
  for (;;) {
    streamAbort = new AbortController();
    try {
      const headers = { Accept: 'text/event-stream' };
      if (token()) headers.Authorization = 'Bearer ' + token();
      const r = await fetch(API + '/events?stream=true', { headers, signal: streamAbort.signal });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      banner(null);
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
          }
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
    }
    banner('Live updates interrupted — reconnecting…');
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 5000);
  }
}

/* ---------------- page plumbing ---------------- */

function stopPage() {
  state.liveListeners.clear();
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.charts.forEach((c) => c.destroy());
  state.charts = [];
}

function every(ms, fn) { state.timers.push(setInterval(fn, ms)); }

let modalResolve = null;
function confirmDialog(title, html, confirmText) {
  $('#modal-title').textContent = title;
  $('#modal-body').innerHTML = html;
  $('#modal-confirm').textContent = confirmText || 'Confirm';
  $('#modal').hidden = false;
  return new Promise((resolve) => { modalResolve = resolve; });
}
function closeModal(ok) { $('#modal').hidden = true; if (modalResolve) modalResolve(ok); modalResolve = null; }

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
    btn.disabled = false;
  }
}

const fmtTime = (t) => (t ? new Date(t).toLocaleTimeString() : '—');
const secondsUntil = (t) => Math.max(0, Math.ceil((new Date(t) - Date.now()) / 1000));

/* ---------------- overview ---------------- */

async function overview() {
  const [groups, services, proxies, health] = await Promise.all([
    api('GET', '/proxy-groups'), api('GET', '/services'), api('GET', '/proxies'), api('GET', '/health')]);
  const verdicts = {};
  health.endpoints.forEach((e) => { verdicts[e.service + '/' + e.id] = e; });
  const fleets = {};
  await Promise.all(services.items.map(async (s) => {
    const fl = await api('GET', `/services/${s.name}/fleets`);
    fleets[s.name] = await Promise.all(fl.items.map(async (f) => ({ ...f, endpoints: (await api('GET', `/services/${s.name}/fleets/${f.name}/endpoints`)).items })));
  }));
  const nacks = proxies.items.filter((p) => Object.values(p.types).some((t) => t.last_nack));
  let html = '';
  if (nacks.length) {
    html += `<div class="nack-box" id="nacks"><strong>${nacks.length} proxy(ies) rejected configuration</strong>` +
      nacks.map((p) => Object.entries(p.types).filter(([, t]) => t.last_nack).map(([k, t]) =>
        `<div class="nack" data-proxy="${esc(p.id)}">${esc(p.id)} (${esc(p.proxy_group)}) rejected ${k.toUpperCase()} version ${esc(t.last_nack.version)}: <code>${esc(t.last_nack.error)}</code></div>`).join('')).join('') + '</div>';
  }
  for (const g of groups.items) {
    html += `<div class="card"><h2>Proxy group ${esc(g.name)} <span class="muted">:${g.listener_port}</span></h2>`;
    for (const s of services.items.filter((x) => x.proxy_group === g.name)) {
      const a = s.affinity;
      html += `<div class="card service" data-service="${esc(s.name)}"><h3>${esc(s.name)}</h3>
        <div class="kv"><span class="muted">affinity</span><span>${esc(a.mode)}${a.mode !== 'none' ? ` · cookie <code>${esc(a.cookie_name)}</code> · TTL in force <strong class="ttl-in-force">${s.ttl_in_force_s} s</strong> (normal ${a.ttl_s} s)` : ''}</span>
        <span class="muted">domains</span><span>${esc(s.domains.join(', ') || s.name)}</span></div>
        <table><tr><th>fleet</th><th>role</th><th>version</th><th>session format</th><th>endpoints</th></tr>`;
      for (const f of fleets[s.name] || []) {
        html += `<tr data-fleet="${esc(f.name)}"><td>${esc(f.name)}</td><td><span class="badge ${f.role} role">${f.role}</span></td><td>${esc(f.version)}</td><td>${esc(f.session_format)}</td><td>`;
        html += f.endpoints.map((e) => {
          const h = verdicts[s.name + '/' + e.id] || { verdicts: [] };
          return `<details><summary>${esc(e.id)} <span class="badge ${e.admin_state}">${e.admin_state}</span> <span class="badge ${e.health}">${e.health}</span></summary>
            ${h.verdicts.length ? h.verdicts.map((v) => `${esc(v.checker)}: ${v.verdict} (${fmtTime(v.at)})`).join('<br>') : '<span class="muted">no checker verdicts</span>'}</details>`;
        }).join('') || '<span class="muted">none</span>';
        html += '</td></tr>';
      }
      html += `</table><div class="actions"><button class="plan" data-service="${esc(s.name)}">Blue-green deploy…</button></div></div>`;
    }
    html += '</div>';
  }
  html += `<div class="card"><h2>Connected proxies</h2><table id="proxies"><tr><th>node</th><th>group</th><th>kind</th><th>CDS</th><th>EDS</th><th>LDS</th><th>RDS</th></tr>` +
    proxies.items.map((p) => `<tr><td>${esc(p.id)}</td><td>${esc(p.proxy_group)}</td><td>${p.kind}</td>` +
      ['cds', 'eds', 'lds', 'rds'].map((k) => {
        const t = p.types[k];
        if (t.last_nack) return `<td><span class="badge nack" title="${esc(t.last_nack.error)}">NACK</span></td>`;
        return `<td>${t.acked_version ? '<span class="badge healthy">ACK</span>' : t.sent_version ? '<span class="badge">sent</span>' : '<span class="muted">—</span>'}</td>`;
      }).join('') + '</tr>').join('') + '</table></div>';
  $('#main').innerHTML = html || '<p class="muted">Nothing configured yet.</p>';
  $('#main').querySelectorAll('button.plan').forEach((b) => { guard(b, 'operator'); b.onclick = () => { location.hash = '#/deployments/new?service=' + b.dataset.service; }; });
  state.liveListeners.add(debounce(route, 300));
  every(3000, () => overview_refresh_proxies());
}

async function overview_refresh_proxies() {
  const proxies = await api('GET', '/proxies').catch(() => null);
  if (proxies && proxies.items.some((p) => Object.values(p.types).some((t) => t.last_nack)) && !$('#nacks')) route();
}

function debounce(fn, ms) { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }

/* ---------------- deployments ---------------- */

async function deploymentsList() {
  const deps = await api('GET', '/deployments');
  $('#main').innerHTML = `<div class="card"><h2>Deployments</h2><div class="actions"><button class="primary" id="new">Plan a blue-green deployment…</button></div>
    <table><tr><th>id</th><th>service</th><th>from → to</th><th>state</th><th>created</th></tr>${deps.items.slice().reverse().map((d) =>
      `<tr><td><a href="#/deployments/${d.id}">${d.id}</a></td><td>${esc(d.service)}</td><td>${esc(d.from_fleet)} → ${esc(d.to_fleet)}</td><td><span class="badge ${d.state}">${d.state}</span></td><td>${fmtTime(d.created_at)}</td></tr>`).join('')}</table></div>`;
  guard($('#new'), 'operator').onclick = () => { location.hash = '#/deployments/new'; };
  state.liveListeners.add(debounce(route, 300));
}

async function planForm(params) {
  const services = (await api('GET', '/services')).items;
  const pick = params.get('service') || (services[0] && services[0].name);
  $('#main').innerHTML = `<div class="card"><h2>Plan a blue-green deployment</h2>
    <form class="grid" id="plan">
      <label for="svc">service</label><select id="svc">${services.map((s) => `<option ${s.name === pick ? 'selected' : ''}>${esc(s.name)}</option>`).join('')}</select>
      <label for="to">to fleet</label><select id="to"></select>
      <label for="lowered">lowered cookie TTL (s)</label><input id="lowered" type="number" min="1" placeholder="default min(300, TTL)">
      <label for="lead">lead before cutover (s)</label><input id="lead" type="number" min="0" placeholder="default 2 × TTL">
      <label for="threshold">tail threshold (%)</label><input id="threshold" type="number" step="0.1" min="0.1" max="5" placeholder="default 2">
      <label for="factor">deadline (× lowered TTL)</label><input id="factor" type="number" step="0.5" min="1" max="10" placeholder="default 3">
      <label for="force">accept a short lead</label><input id="force" type="checkbox">
    </form><p class="muted" id="plan-help"></p>
    <div class="actions"><button class="primary" id="plan-go">Plan</button></div></div>`;
  const fill = async () => {
    const svc = services.find((s) => s.name === $('#svc').value);
    const fl = (await api('GET', `/services/${svc.name}/fleets`)).items;
    $('#to').innerHTML = fl.filter((f) => f.role === 'standby' || f.role === 'retired').map((f) => `<option>${esc(f.name)}</option>`).join('');
    const active = fl.find((f) => f.role === 'active');
    $('#plan-help').textContent = `Moves ${svc.name} from ${active ? active.name : '(no active fleet)'}; normal cookie TTL ${svc.affinity.ttl_s} s.`;
  };
  $('#svc').onchange = fill;
  await fill();
  guard($('#plan-go'), 'operator').onclick = (e) => act(e.target, async () => {
    const body = { service: $('#svc').value, to_fleet: $('#to').value };
    const num = (id, key, f = parseInt) => { if ($(id).value !== '') body[key] = f($(id).value, 10); };
    num('#lowered', 'lowered_ttl_s'); num('#lead', 'lead_s'); num('#threshold', 'tail_threshold_pct', parseFloat); num('#factor', 'deadline_factor', parseFloat);
    if ($('#force').checked) body.force = true;
    const d = await api('POST', '/deployments', body);
    location.hash = '#/deployments/' + d.id;
  });
}

const STEPS = ['planned', 'ttl_lowered', 'draining', 'completed'];

async function deploymentPage(id) {
  const d = await api('GET', '/deployments/' + id);
  const stepIdx = STEPS.indexOf(d.state === 'rolling_back' ? 'draining' : d.state);
  let html = `<div class="card" id="deployment" data-state="${d.state}"><h2>${esc(d.service)}: ${esc(d.from_fleet)} → ${esc(d.to_fleet)} <span class="badge ${d.state}" id="state">${d.state}</span></h2>
    <div class="steps">${STEPS.map((s, i) => `<span class="${i < stepIdx || d.state === 'completed' ? 'done' : i === stepIdx ? 'now' : ''}">${i + 1}. ${{ planned: 'plan', ttl_lowered: 'lower TTL', draining: 'cut over & drain', completed: 'finish' }[s]}</span>`).join('')}</div>`;
  html += d.warnings.map((w) => `<div class="warn-box">${esc(w)}</div>`).join('');
  html += `<div class="kv"><span class="muted">cookie TTL</span><span>normal ${d.normal_ttl_s} s, lowered ${d.lowered_ttl_s} s</span>
    <span class="muted">tail threshold</span><span>${d.tail_threshold_pct} %${d.session_format_change ? ' (lowered: session format changes)' : ''}</span>
    <span class="muted">deadline</span><span>${d.deadline_at ? fmtTime(d.deadline_at) : `${d.deadline_factor} × lowered TTL after cutover`}</span></div>`;
  html += '<div id="step"></div></div>';
  if (d.tail && d.cutover_at) html += `<div class="card"><h3>Affinity tail: share of requests still reaching <span id="draining">${esc(d.draining_fleet || (d.state === 'rolled_back' ? d.to_fleet : d.from_fleet))}</span></h3>
      <div id="tail-now" class="countdown"></div><div id="eta" class="muted"></div><div id="chart"></div></div>`;
  $('#main').innerHTML = html;
  renderStep(d);
  if (d.tail && d.cutover_at) renderChart(d);
  const refresh = debounce(route, 200); /* re-render through the router: old timers go */
  state.liveListeners.add((ev) => { if (ev.object === 'deployments/' + id) refresh(); });
  if (['draining', 'rolling_back'].includes(d.state)) every(1000, async () => {
    const n = await api('GET', '/deployments/' + id).catch(() => null);
    if (n && n.state !== d.state) refresh(); else if (n) updateChart(n);
  });
}

function renderStep(d) {
  const step = $('#step');
  const btn = (cls, label, id) => `<button class="${cls}" id="${id}">${label}</button>`;
  const post = (action, body) => api('POST', `/deployments/${d.id}/${action}`, body);
  if (d.state === 'planned') {
    step.innerHTML = `<p>Step 2 pushes the lowered cookie TTL (${d.normal_ttl_s} s → ${d.lowered_ttl_s} s) to every proxy now. Cookies already issued keep their old TTL, so cutover unlocks ${d.lead_s} s later.</p>
      <div class="actions">${btn('primary', 'Lower TTL…', 'lower')}${btn('', 'Abort…', 'abort')}</div>`;
    guard($('#lower'), 'operator').onclick = (e) => confirmDialog('Lower the cookie TTL?', `Every proxy gets a ${d.lowered_ttl_s} s TTL for <code>${esc(d.service)}</code> cookies (now ${d.normal_ttl_s} s). Cutover unlocks in ${d.lead_s} s.`, 'Lower TTL')
      .then((ok) => ok && act(e.target, () => post('lower-ttl')));
  } else if (d.state === 'ttl_lowered') {
    step.innerHTML = `<p>Cutover unlocks at ${fmtTime(d.cutover_unlocks_at)}: <span class="countdown" id="countdown"></span></p>
      ${d.session_format_change ? '<label><input type="checkbox" id="ack"> I acknowledge the session format change</label><br>' : ''}
      <label><input type="checkbox" id="force"> Cut over before it unlocks (cookies issued before the TTL was lowered may still pin sessions to ${esc(d.from_fleet)})</label>
      <div class="actions">${btn('primary', 'Cut over…', 'cutover')}${btn('', 'Roll back…', 'rollback')}${btn('', 'Abort…', 'abort')}</div>`;
    const tick = () => {
      if (!$('#countdown')) return;
      const s = secondsUntil(d.cutover_unlocks_at);
      $('#countdown').textContent = s > 0 ? `${s} s` : 'unlocked';
      $('#cutover').disabled = !can('operator') || (s > 0 && !$('#force').checked) || (d.session_format_change && !$('#ack').checked);
    };
    tick();
    every(500, tick);
    $('#force').onchange = tick;
    if ($('#ack')) $('#ack').onchange = tick;
    guard($('#cutover'), 'operator').onclick = (e) => confirmDialog(`Cut ${d.service} over from ${d.from_fleet} to ${d.to_fleet}?`,
      `<p><strong>${esc(d.to_fleet)}</strong> becomes active: every new session goes there.</p><p><strong>${esc(d.from_fleet)}</strong> drains: sessions pinned by a cookie keep reaching it until their cookie expires; it is retired when the tail stays under ${d.tail_threshold_pct} % (deadline ${d.deadline_factor} × ${d.lowered_ttl_s} s).</p>`, `Cut over to ${d.to_fleet}`)
      .then((ok) => ok && act(e.target, () => post('cutover', { force: $('#force').checked, acknowledge_format_change: $('#ack') ? $('#ack').checked : false })));
    guard($('#rollback'), 'operator').onclick = (e) => confirmDialog('Roll back?', `Nothing reached ${esc(d.to_fleet)} yet: the normal TTL (${d.normal_ttl_s} s) comes back and the deployment ends.`, 'Roll back')
      .then((ok) => ok && act(e.target, () => post('rollback')));
  } else if (d.state === 'draining' || d.state === 'rolling_back') {
    const to = d.state === 'draining' ? d.to_fleet : d.from_fleet;
    step.innerHTML = `<p>${esc(to)} is active; ${esc(d.draining_fleet)} drains. It finishes by itself when the tail stays under ${d.tail_threshold_pct} % for 3 samples, or at ${fmtTime(d.deadline_at)}.</p>
      <div class="actions">${btn('', 'Finish now…', 'finish')}${btn('', 'Extend…', 'extend')}${d.state === 'draining' ? btn('danger', 'Roll back…', 'rollback') : ''}</div>`;
    guard($('#finish'), 'operator').onclick = (e) => confirmDialog('Finish now?', `${esc(d.draining_fleet)} leaves every proxy now${d.state === 'draining' ? ' and is retired' : ''}; sessions still pinned to it are re-pinned (the current tail is shown on the chart). The normal TTL (${d.normal_ttl_s} s) comes back.`, 'Finish now')
      .then((ok) => ok && act(e.target, () => post('finish')));
    guard($('#extend'), 'operator').onclick = (e) => confirmDialog('Extend the deadline?', `The deadline moves ${d.lowered_ttl_s} s later (from ${fmtTime(d.deadline_at)}).`, 'Extend')
      .then((ok) => ok && act(e.target, () => post('extend')));
    if ($('#rollback')) guard($('#rollback'), 'operator').onclick = (e) => confirmDialog(`Roll ${d.service} back to ${d.from_fleet}?`, `<strong>${esc(d.from_fleet)}</strong> becomes active again; sessions pinned to <strong>${esc(d.to_fleet)}</strong> drain back the same way and it returns to standby.`, `Roll back to ${d.from_fleet}`)
      .then((ok) => ok && act(e.target, () => post('rollback')));
  } else {
    step.innerHTML = `<p>Finished ${fmtTime(d.finished_at)} by <strong id="reason">${esc(d.finish_reason)}</strong>${d.final_tail_pct !== null ? `, tail ${d.final_tail_pct.toFixed(2)} %` : ''}.</p>`;
  }
  if ($('#abort')) guard($('#abort'), 'operator').onclick = (e) => confirmDialog('Abort?', `The deployment ends; the TTL of ${esc(d.service)} goes back to ${d.normal_ttl_s} s. No fleet changes role.`, 'Abort')
    .then((ok) => ok && act(e.target, () => post('abort')));
}

/* The chart: tail samples, the threshold, and the fitted exponential decay. */
function chartData(d) {
  const origin = new Date(d.cutover_at).getTime() / 1000;
  const xs = d.tail.map((s) => new Date(s.t).getTime() / 1000 - origin).filter((x) => x >= -0.001);
  const ys = d.tail.slice(d.tail.length - xs.length).map((s) => s.pct);
  const fit = d.fit ? xs.map((x) => d.fit.pct_at_origin * Math.exp(-d.fit.rate_per_s * x)) : xs.map(() => null);
  return [xs, ys, xs.map(() => d.tail_threshold_pct), fit];
}

function renderChart(d) {
  const el = $('#chart');
  const opts = {
    width: Math.min(1100, el.clientWidth || 900), height: 300,
    scales: { x: { time: false }, y: { range: [0, 100] } },
    axes: [{ label: 'seconds since the drain began' }, { label: '% of requests' }],
    series: [{}, { label: 'tail %', stroke: '#2563eb', width: 2, points: { show: true } },
      { label: 'threshold', stroke: '#b91c1c', dash: [6, 4] }, { label: 'fitted decay', stroke: '#15803d', dash: [2, 3] }],
  };
  const chart = new uPlot(opts, chartData(d), el);
  state.charts.push(chart);
  state.chart = chart;
  updateChart(d);
}

function updateChart(d) {
  if (state.chart && d.tail) state.chart.setData(chartData(d));
  const last = d.tail && d.tail.length ? d.tail[d.tail.length - 1] : null; /* whose reports (issue 13) */
  const from = last && last.reporters ? ` · from ${last.reporters} of ${last.connected_proxies ?? '?'} connected proxies` : '';
  if ($('#tail-now')) $('#tail-now').textContent = d.tail_pct !== null && d.tail_pct !== undefined ? `${d.tail_pct.toFixed(2)} %${from}` : 'no traffic measured yet';
  if ($('#eta')) $('#eta').textContent = d.eta ? `fitted half-life ${d.fit.half_life_s.toFixed(1)} s · ETA to ${d.tail_threshold_pct} %: ${fmtTime(d.eta)} · deadline ${fmtTime(d.deadline_at)}` : `deadline ${fmtTime(d.deadline_at)}`;
}

/* ---------------- rolling restarts ---------------- */

async function restartsPage() {
  const [services, restarts] = await Promise.all([api('GET', '/services'), api('GET', '/restarts')]);
  $('#main').innerHTML = `<div class="card"><h2>Plan a rolling restart</h2>
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
    <div class="card"><h2>Rolling restarts</h2><table id="restarts"><tr><th>id</th><th>service / fleet</th><th>batches</th><th>state</th><th>started</th></tr>${restarts.items.slice().reverse().map((r) =>
      `<tr><td><a href="#/restarts/${r.id}">${r.id}</a></td><td>${esc(r.service)} / ${esc(r.fleet)}</td><td>${r.batches} × ${r.batch_size}</td><td><span class="badge ${r.state}">${r.state}</span></td><td>${fmtTime(r.created_at)}</td></tr>`).join('')}</table></div>`;
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
    $('#rplan-out').innerHTML = `<div class="kv" id="plan-figures"><span class="muted">batches</span><span>${p.batches} of ${p.batch_size}</span>
      <span class="muted">drain window</span><span>${p.drain_window_s} s</span><span class="muted">a batch every</span><span>${p.interval_s} s</span>
      <span class="muted">predicted total</span><span id="plan-total">${Math.round(p.total_s / 60)} min</span></div><p class="muted" id="plan-why">${esc(p.explanation)}</p>`;
  });
  guard($('#rstart'), 'operator').onclick = (e) => confirmDialog('Start the rolling restart?',
    `Batches of <code>${esc($('#rfleet').value)}</code> go DRAINING one after another; each waits for the orchestrator (or the health checks) before the next.`, 'Start')
    .then((ok) => ok && act(e.target, async () => { const r = await api('POST', '/restarts', body(false)); location.hash = '#/restarts/' + r.id; }));
}

async function restartPage(id) {
  const r = await api('GET', '/restarts/' + id);
  const live = ['running', 'paused'].includes(r.state);
  const done = r.batch_list.filter((b) => b.state === 'done').length;
  $('#main').innerHTML = `<div class="card" id="restart" data-state="${r.state}"><h2>Rolling restart of ${esc(r.service)} / ${esc(r.fleet)} <span class="badge ${r.state}" id="rstate">${r.state}</span></h2>
    <div class="kv"><span class="muted">progress</span><span id="rprogress">${done} of ${r.batches} batches done</span>
      <span class="muted">batches</span><span>${r.batches} × ${r.batch_size}, at most ${r.concurrent_batches} at once, one every ${r.interval_s} s</span>
      <span class="muted">drain window</span><span>${r.drain_window_s} s</span>
      <span class="muted">webhook</span><span>${esc(r.webhook_url) || '—'}</span></div>
    <div class="actions">${r.state === 'paused' ? '<button class="primary" id="rresume">Resume</button>' : '<button id="rpause">Pause</button>'}<button id="rabort">Abort…</button></div>
    <table id="batches"><tr><th>#</th><th>endpoints</th><th>state</th><th>draining since</th><th>ready</th><th>restarted</th><th>done</th><th>webhook</th></tr>${r.batch_list.map((b) =>
      `<tr data-batch="${b.n}"><td>${b.n}</td><td>${b.endpoints.map(esc).join(', ')}</td><td><span class="badge ${b.state}">${b.state}</span>${b.state === 'ready' ? ` <button class="restarted" data-n="${b.n}">Mark restarted</button>` : ''}</td><td>${fmtTime(b.started_at)}</td><td>${fmtTime(b.ready_at)}${b.drained_early ? ' <span class="muted" title="load reports showed no request in progress">(idle early)</span>' : ''}</td><td>${fmtTime(b.restarted_at)}</td><td>${fmtTime(b.done_at)}</td><td>${b.webhook_attempts ? (b.webhook_ok ? 'ok' : 'failed') + ` (${b.webhook_attempts})` : '—'}</td></tr>`).join('')}</table></div>`;
  const post = (what) => api('POST', `/restarts/${id}/${what}`);
  const refresh = debounce(route, 200);
  for (const [sel, action] of [['#rpause', 'pause'], ['#rresume', 'resume']]) {
    if ($(sel)) guard($(sel), 'operator').onclick = (e) => act(e.target, async () => { await post(action); refresh(); });
  }
  guard($('#rabort'), 'operator').onclick = (e) => confirmDialog('Abort the rolling restart?', 'Every endpoint of this restart goes back to active, whatever its batch was doing.', 'Abort')
    .then((ok) => ok && act(e.target, async () => { await post('abort'); refresh(); }));
  if (!live) document.querySelectorAll('#restart .actions button').forEach((b) => { b.disabled = true; });
  document.querySelectorAll('button.restarted').forEach((b) => { guard(b, 'operator').onclick = (e) => act(e.target, async () => { await post(`batches/${b.dataset.n}/restarted`); refresh(); }); });
  state.liveListeners.add((ev) => { if (ev.object === 'restarts/' + id) refresh(); });
  if (live) every(2000, refresh);
}

/* ---------------- events ---------------- */

async function eventsPage() {
  const services = (await api('GET', '/services')).items;
  $('#main').innerHTML = `<div class="card"><h2>Events</h2><label>service <select id="filter"><option value="">all</option>${services.map((s) => `<option>${esc(s.name)}</option>`).join('')}</select></label>
    <ul class="events" id="events"></ul></div>`;
  const list = $('#events');
  const shown = [];
  const matches = (e) => !$('#filter').value || e.object.startsWith('services/' + $('#filter').value) || e.summary.includes(' ' + $('#filter').value);
  const render = () => { list.innerHTML = shown.filter(matches).slice(-300).reverse().map((e) => `<li><span class="muted">${fmtTime(e.at)}</span> <strong>${esc(e.action)}</strong> ${esc(e.summary)} <span class="muted">— ${esc(e.actor)}</span></li>`).join(''); };
  let since = 0;
  for (;;) {
    const page = await api('GET', `/events?since=${since}&limit=1000`);
    shown.push(...page.items);
    if (page.items.length < 1000) break;
    since = page.next_since;
  }
  render();
  $('#filter').onchange = render;
  state.liveListeners.add((e) => { shown.push(e); render(); });
}

/* ---------------- router ---------------- */

/* Forms are driven by their buttons; Enter must not submit them (the CSP forbids it anyway). */
document.addEventListener('submit', (e) => e.preventDefault());

async function route() {
  stopPage();
  const [path, query] = location.hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  document.querySelectorAll('header nav a').forEach((a) => a.classList.toggle('active', (path || '/').startsWith('/' + a.dataset.nav) || (a.dataset.nav === 'overview' && (!path || path === '/'))));
  try {
    if (!path || path === '/') await overview();
    else if (path === '/deployments') await deploymentsList();
    else if (path === '/deployments/new') await planForm(params);
    else if (path.startsWith('/deployments/')) await deploymentPage(path.split('/')[2]);
    else if (path === '/restarts') await restartsPage();
    else if (path.startsWith('/restarts/')) await restartPage(path.split('/')[2]);
    else if (path === '/events') await eventsPage();
    else $('#main').innerHTML = '<p>Not found.</p>';
  } catch (e) {
    if (e.status !== 401 && e.status !== 0) $('#main').innerHTML = `<div class="card"><p class="error">${esc(e.message)}</p></div>`;
  }
}

async function start() {
  try {
    const me = await api('GET', '/whoami');
    state.role = me.role;
    state.actor = me.actor;
    $('#who').textContent = `${me.actor} · ${me.role}`;
  } catch (e) {
    return;
  }
  if (streamAbort) streamAbort.abort();
  liveEvents();
  route();
}

$('#modal-cancel').onclick = () => closeModal(false);
$('#modal-confirm').onclick = () => closeModal(true);
window.addEventListener('hashchange', route);
start();
