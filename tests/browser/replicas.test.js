// Browser tests of the replicas view and the database outage banner (issue 16): real headless
// Chromium against real holdfast replicas on a real PostgreSQL cluster, which
// tests/pg/pgcluster.py starts around this file (`pgcluster.py run -- node --test ...`, as
// tests/CMakeLists.txt does) and which the test stops and starts again with tests/browser/pg_ctl.py.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const { SRC, PY, freePort, startHoldfast, call, world, stop, launch, page, shot } = require('./harness');

const HOLDFAST = process.env.HOLDFAST_BIN || path.join(SRC, 'build/control-plane/holdfast');
const PG = process.env.HF_TEST_PG;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let browser;
test.before(async () => { browser = await launch(); });
test.after(async () => { await browser.close(); });

/* A holdfast replica on the database at url, on free ports. */
async function startReplica(url) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hf-ui-pg-'));
  const http = await freePort();
  const xds = await freePort();
  const log = fs.openSync(path.join(dir, 'holdfast.log'), 'a');
  const proc = spawn(HOLDFAST, ['--db', url, '--http', `127.0.0.1:${http}`, '--xds', `127.0.0.1:${xds}`, '--lrs-interval', '200'],
    { stdio: ['ignore', log, log] });
  const base = `http://127.0.0.1:${http}`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(base + '/readyz')).ok) break; } catch (e) { /* not yet */ }
    await sleep(50);
  }
  return { proc, base, xds: `127.0.0.1:${xds}`, dir };
}

/* 'self' when hf leads, else the leader's id, or null. */
async function leaderOf(hf) {
  const r = await call(hf, 'GET', '/replicas').catch(() => null);
  if (!r || r.status !== 200) return null;
  const l = r.json.items.find((x) => x.leader);
  return l ? (l.self ? 'self' : l.id) : null;
}

async function until(fn, what, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(100);
  }
  assert.fail(`${what}: not within ${ms} ms`);
}

const pgCtl = (what) => promisify(execFile)(PY, [path.join(__dirname, 'pg_ctl.py'), what], { timeout: 90000 });
/* Chromium logs every 503 answer as a console error; those are expected during the outage. */
const unexpected = (p) => p.consoleErrors.filter((e) => !/Failed to load resource: the server responded with a status of 503/.test(e));

test('on SQLite the replicas view shows the one process, leading', { timeout: 30000 }, async () => {
  const hf = await startHoldfast();
  try {
    const p = await page(browser);
    await p.goto(hf.base + '/#/replicas');
    const row = p.locator('#replicas tr.replica');
    await row.first().waitFor();
    assert.equal(await row.count(), 1);
    assert.equal(await row.getAttribute('data-self'), 'true');
    assert.equal(await row.getAttribute('data-leader'), 'true');
    assert.match(await row.locator('.badge.self').innerText(), /this page/);
    assert.match(await row.locator('td.role').innerText(), /leader since/);
    assert.match(await p.locator('#replicas-note').innerText(), /One holdfast process on SQLite/);
    assert.equal(await p.locator('#no-leader, #silent').count(), 0);
    // unobtrusive: no replica chip or item in the incident strip on SQLite
    await p.locator('#strip .inc').first().waitFor();
    assert.equal(await p.locator('#strip .chip.replicas, #strip .inc[href="#/replicas"]').count(), 0);
    assert.deepEqual(p.consoleErrors, []);
  } finally {
    assert.equal(await stop(hf.proc), 0);
  }
});

test('two replicas on PostgreSQL: the page shows both and the leader; a database outage is shown, blocks writes and clears by itself',
  { timeout: 240000, skip: PG ? false : 'needs PostgreSQL: run under tests/pg/pgcluster.py run -- (as ctest does)' }, async () => {
    const a = await startReplica(PG);
    let b = null;
    let pgDown = false;
    let aStopped = false;
    try {
      await until(async () => (await leaderOf(a)) === 'self', 'replica A leads');
      b = await startReplica(PG);
      await world(a);
      const aId = (await call(a, 'GET', '/replicas')).json.items.find((r) => r.self).id;
      const bId = (await call(b, 'GET', '/replicas')).json.items.find((r) => r.self).id;

      // The replicas view on B: both, A leads (since when), B is this page.
      const p = await page(browser);
      await p.goto(b.base + '/#/replicas');
      await p.locator('#replicas tr.replica').nth(1).waitFor({ timeout: 15000 });
      assert.equal(await p.locator('#replicas tr.replica').count(), 2);
      const rowA = p.locator(`#replicas tr.replica[data-replica="${aId}"]`);
      const rowB = p.locator(`#replicas tr.replica[data-replica="${bId}"]`);
      assert.equal(await rowA.getAttribute('data-leader'), 'true');
      assert.match(await rowA.locator('td.role').innerText(), /leader since .+ \(\d+ s ago\)/);
      assert.equal(await rowB.getAttribute('data-leader'), 'false');
      assert.equal(await rowB.getAttribute('data-self'), 'true');
      assert.equal(await rowA.getAttribute('data-self'), 'false');
      assert.match(await rowB.locator('.badge.self').innerText(), /this page/);
      assert.match(await rowA.innerText(), new RegExp(a.xds.replace(/\./g, '\\.')));
      assert.match(await rowB.innerText(), new RegExp(b.xds.replace(/\./g, '\\.')));
      assert.match(await rowA.locator('td.heartbeat').innerText(), /^\d+ s ago$/);
      assert.match(await p.locator('#replicas-note').innerText(), new RegExp(`2 replicas on PostgreSQL · ${aId} leads the engines since .* This page talks to ${bId}`));
      assert.match(await p.locator('#strip .chip.replicas').innerText(), /replicas 2\/2/);
      await shot(p, '19-replicas', false);

      // The overview on B, then PostgreSQL stops.
      await p.evaluate(() => { location.hash = '#/'; });
      const drain = p.locator('.fleet-eps[data-fleet="blue"] tr[data-ep="127.0.0.1:9100"] button[data-to="draining"]');
      await drain.waitFor({ timeout: 15000 });
      assert.ok(!(await drain.isDisabled()));
      await pgCtl('stop');
      pgDown = true;
      const refused = await call(b, 'PATCH', '/services/cart/fleets/blue/endpoints/127.0.0.1:9100', { admin_state: 'draining' });
      assert.equal(refused.status, 503);
      await p.locator('#banner[data-kind="database"]').waitFor({ timeout: 15000 });
      const text = await p.locator('#banner').innerText();
      assert.match(text, /The database is unreachable since \d\d:\d\d:\d\d \(holdfast says: the database is unavailable/);
      assert.match(text, /Proxies keep their last configuration; changes cannot be saved/);
      assert.match(await p.locator('#asof').innerText(), /^STALE · as of \d\d:\d\d:\d\d$/);
      assert.match(await p.locator('#asof').getAttribute('title'), /cannot reach its database/);
      assert.ok(await drain.isDisabled(), 'writes are disabled while the database is down');
      assert.match(await drain.getAttribute('title'), /database is unreachable: changes cannot be saved/);
      assert.ok(await p.locator('.service[data-service="cart"] button.plan').isDisabled());
      assert.equal(await p.locator('#strip [data-inc="clear"]').isVisible(), false, '"No incident" is not claimed on stale data');
      // what was shown stays, and is not refreshed as live
      assert.equal(await p.locator('.fleet-eps[data-fleet="blue"] tr[data-ep="127.0.0.1:9100"] .badge.active').count(), 1);
      await shot(p, '20-database-down', false);
      // a view opened during the outage says why it is empty
      await p.evaluate(() => { location.hash = '#/replicas'; });
      await p.locator('#unreachable', { hasText: 'holdfast cannot reach its database' }).waitFor({ timeout: 10000 });
      // a page opened during the outage (on the other replica) says why too
      const p2 = await page(browser);
      await p2.goto(a.base + '/');
      await p2.locator('#unreachable', { hasText: 'holdfast cannot reach its database' }).waitFor({ timeout: 10000 });
      await p2.locator('#banner[data-kind="database"]').waitFor({ timeout: 10000 });
      // it tells when the outage began on that replica (/readyz's unavailable_since), not when
      // the page was opened
      const ready = await (await fetch(a.base + '/readyz')).json();
      assert.ok(ready.unavailable_since, JSON.stringify(ready));
      const began = await p2.evaluate((iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }), ready.unavailable_since);
      assert.match(await p2.locator('#banner').innerText(), new RegExp(`unreachable since ${began} `));
      await sleep(1500);
      assert.equal(await p.locator('#banner[data-kind="database"]').isVisible(), true, 'still down: the banner stays');

      // PostgreSQL is back: the banner goes by itself, the view loads, a write works.
      await pgCtl('start');
      pgDown = false;
      await p.locator('#banner').waitFor({ state: 'hidden', timeout: 30000 });
      await p2.locator('.service[data-service="cart"]').waitFor({ timeout: 20000 });
      assert.equal(await p2.locator('#banner').isVisible(), false);
      assert.deepEqual(unexpected(p2), []);
      await p.locator('#replicas tr.replica').nth(1).waitFor({ timeout: 15000 });
      await p.locator('#replicas tr.replica[data-leader="true"]').waitFor({ timeout: 20000 });
      assert.doesNotMatch(await p.locator('#asof').innerText(), /STALE/);
      await p.evaluate(() => { location.hash = '#/'; });
      await drain.waitFor({ timeout: 15000 });
      await until(async () => !(await drain.isDisabled()), 'the drain button is enabled again', 10000);
      await drain.click();
      await p.locator('#modal:not([hidden])').waitFor();
      await p.click('#modal-confirm');
      await p.locator('.fleet-eps[data-fleet="blue"] tr[data-ep="127.0.0.1:9100"] .badge.draining').waitFor({ timeout: 15000 });
      // committed in the shared database: replica A has it
      const onA = (await call(a, 'GET', '/services/cart/fleets/blue/endpoints')).json.items.find((e) => e.port === 9100);
      assert.equal(onA.admin_state, 'draining');

      // The leader hangs (SIGSTOP): the view shows its heartbeat going silent and B taking over.
      await p.evaluate(() => { location.hash = '#/replicas'; });
      await rowB.waitFor({ timeout: 15000 });
      a.proc.kill('SIGSTOP');
      aStopped = true;
      await p.locator(`#replicas tr.replica[data-replica="${bId}"][data-leader="true"]`).waitFor({ timeout: 20000 });
      await p.locator(`#replicas tr.replica.problem[data-replica="${aId}"][data-leader="false"]`).waitFor({ timeout: 10000 });
      assert.match(await rowA.locator('td.heartbeat').innerText(), /^silent · \d+ s ago$/);
      assert.match(await p.locator('#silent').innerText(), new RegExp(`1 replica has not heartbeated within the 5 s lease: ${aId}`));
      assert.match(await p.locator('#replicas-note').innerText(), new RegExp(`${bId} leads the engines since`));
      await p.locator('#strip .chip.replicas.amber', { hasText: 'replicas 1/2' }).waitFor({ timeout: 10000 });
      await p.locator('#strip .inc[href="#/replicas"]', { hasText: 'replica without heartbeat' }).waitFor({ timeout: 10000 });
      await shot(p, '21-leader-hung', false);
      a.proc.kill('SIGCONT');
      aStopped = false;
      assert.deepEqual(unexpected(p), []);
    } finally {
      if (aStopped) a.proc.kill('SIGCONT');
      if (pgDown) await pgCtl('start');
      if (b) assert.equal(await stop(b.proc), 0);
      assert.equal(await stop(a.proc), 0);
    }
  });
