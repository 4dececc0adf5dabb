// What the browser tests share: the real holdfast on free 127.0.0.1 ports (restartable on the same
// ports and database), the REST calls that set up a world, the fleet simulator, real headless
// Chromium (Debian's, driven by playwright-core) and pages that record console errors.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const SRC = path.resolve(__dirname, '..', '..');
const HOLDFAST = process.env.HOLDFAST_BIN || path.join(SRC, 'build/control-plane/holdfast');
const SHIM = process.env.HOLDFAST_SHIM || path.join(path.dirname(path.dirname(HOLDFAST)), 'shim/holdfast-shim');
const SHOTS = process.env.HOLDFAST_SCREENSHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'hf-shots-'));
const PB_PY = process.env.HOLDFAST_PB_PY || path.join(SRC, 'build/api/pb/py');
const PY = '/usr/bin/python3';
const NORMAL_TTL = 4;
// HTTPS (issue 13): run_https.sh sets a folder with holdfast's certificate and its key's SPKI pin.
const TLS_DIR = process.env.HOLDFAST_UI_TLS_DIR;
const TLS_ARGS = TLS_DIR ? ['--tls-cert', path.join(TLS_DIR, 'server-127.0.0.1.crt'), '--tls-key', path.join(TLS_DIR, 'server-127.0.0.1.key')] : [];

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

/* Starts holdfast; with prev (a stopped one), on the same ports and database. */
async function startHoldfast(prev) {
  const dir = prev ? prev.dir : fs.mkdtempSync(path.join(os.tmpdir(), 'hf-ui-'));
  const http = prev ? prev.httpPort : await freePort();
  const xds = prev ? prev.xdsPort : await freePort();
  const log = fs.openSync(path.join(dir, 'holdfast.log'), 'a');
  const proc = spawn(HOLDFAST, ['--db', path.join(dir, 'db'), '--http', `127.0.0.1:${http}`,
    '--xds', `127.0.0.1:${xds}`, '--lrs-interval', '200', ...TLS_ARGS], { stdio: ['ignore', log, log] });
  const base = `${TLS_DIR ? 'https' : 'http'}://127.0.0.1:${http}`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(base + '/healthz')).ok) break; } catch (e) { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, base, xds: `127.0.0.1:${xds}`, dir, httpPort: http, xdsPort: xds };
}

async function call(hf, method, p, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch(hf.base + '/api/v1' + p, { method, headers, body: body && JSON.stringify(body) });
  const t = await r.text();
  return { status: r.status, json: t ? JSON.parse(t) : null };
}

async function world(hf, greenFormat = 'cart-v3') {
  await call(hf, 'POST', '/proxy-groups', { name: 'edge', listener_port: 10000 });
  await call(hf, 'POST', '/services', { name: 'cart', proxy_group: 'edge', domains: ['cart.example.com'],
    affinity: { mode: 'cookie', cookie_name: 'hf_cart', ttl_s: NORMAL_TTL } });
  await call(hf, 'POST', '/services/cart/fleets', { name: 'blue', version: '1.4.2', session_format: 'cart-v3' });
  await call(hf, 'POST', '/services/cart/fleets', { name: 'green', version: '1.5.0', session_format: greenFormat });
  for (const [fleet, base] of [['blue', 9100], ['green', 9200]]) {
    for (let i = 0; i < 3; i++) {
      await call(hf, 'POST', `/services/cart/fleets/${fleet}/endpoints`, { address: '127.0.0.1', port: base + i, zone: `z${i % 2}` });
    }
  }
}

const pyEnv = () => ({ ...process.env, HOLDFAST_PB_PY: PB_PY });

function startSim(hf, extra = []) {
  const sim = spawn(PY, [path.join(SRC, 'tests/sim/run_sim.py'), '--xds', hf.xds, '--cluster', 'cart', ...extra], { env: pyEnv(), stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    sim.stdout.once('data', () => resolve(sim));
    sim.once('exit', (c) => reject(new Error('simulator exited ' + c)));
  });
}

/* Runs a Python test client from tests/browser; resolves with it once it printed its first line. */
function startClient(script, args, onLine) {
  const c = spawn(PY, [path.join(__dirname, script), ...args], { env: pyEnv(), stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  return new Promise((resolve, reject) => {
    c.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (onLine) onLine(line);
        resolve(c);
      }
    });
    c.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
  });
}

async function stop(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
  const done = new Promise((r) => proc.once('exit', (code) => r(code)));
  proc.kill('SIGTERM');
  return done;
}

function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps',
      ...(TLS_DIR ? [`--ignore-certificate-errors-spki-list=${process.env.HOLDFAST_UI_SPKI}`] : [])],
  });
}

/* A page that records every console error and uncaught exception (p.consoleErrors). */
async function page(browser, viewport = { width: 1280, height: 900 }) {
  const ctx = await browser.newContext({ viewport });
  const p = await ctx.newPage();
  p.consoleErrors = [];
  p.cspErrors = [];
  p.on('pageerror', (e) => p.consoleErrors.push('uncaught: ' + e.message));
  p.on('console', (m) => {
    if (m.type() !== 'error') return;
    p.consoleErrors.push(m.text());
    if (/Content Security Policy/i.test(m.text())) p.cspErrors.push(m.text());
  });
  return p;
}
const shot = (p, name, fullPage = true) => p.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage });

module.exports = { SRC, SHIM, SHOTS, PY, NORMAL_TTL, freePort, startHoldfast, call, world, startSim, startClient, stop, launch, page, shot };
