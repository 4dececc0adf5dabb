// Browser tests of the web UI: real headless Chromium (Debian's, driven by playwright-core)
// against the real holdfast, with the fleet simulator (a simulation of Envoy nodes on real
// ADS/LRS) making traffic. Run by ctest (label browser) with HOLDFAST_BIN and friends set.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const path = require('node:path');

const { SRC, PY, NORMAL_TTL, startHoldfast, call, world, startSim, stop, launch, page, shot } = require('./harness');
let browser;
test.before(async () => { browser = await launch(); });
test.after(async () => { await browser.close(); });

test('a full blue-green drain driven only by clicks', { timeout: 90000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  const sim = await startSim(hf);
  try {
    const p = await page(browser);
    await p.goto(hf.base + '/');
    const card = p.locator('.service[data-service="cart"]');
    await card.waitFor();
    assert.match(await card.locator('.ttl-in-force').innerText(), new RegExp(`${NORMAL_TTL} s`));
    assert.equal(await card.locator('tr[data-fleet="blue"] .role').innerText(), 'active');
    await shot(p, '1-overview');

    await card.locator('button.plan').click();
    await p.locator('#plan').waitFor();
    await p.selectOption('#to', 'green');
    await p.fill('#lowered', '1');
    await p.fill('#lead', String(NORMAL_TTL));
    await shot(p, '2-plan');
    await p.press('#lead', 'Enter'); // Enter does not submit (or navigate away from) the form
    assert.equal(await p.locator('#plan').count(), 1);
    await p.click('#plan-go');
    await p.locator('#deployment[data-state="planned"]').waitFor();

    await p.click('#lower');
    assert.match(await p.locator('#modal-body').innerText(), /1 s TTL/);
    await p.click('#modal-confirm');
    await p.locator('#deployment[data-state="ttl_lowered"]').waitFor();
    assert.match(await p.locator('#countdown').innerText(), /\d+ s|unlocked/);
    assert.ok(await p.locator('#cutover').isDisabled(), 'cutover stays locked until the lead has passed');
    await shot(p, '3-ttl-lowered');

    await p.waitForFunction(() => !document.querySelector('#cutover').disabled, null, { timeout: 15000 });
    await p.click('#cutover');
    const dialog = await p.locator('#modal-body').innerText();
    assert.match(dialog, /green/);
    assert.match(dialog, /blue/);
    await p.click('#modal-confirm');
    await p.locator('#deployment[data-state="draining"]').waitFor();
    await p.locator('#chart .uplot').waitFor();
    await p.waitForFunction(() => /%/.test(document.querySelector('#tail-now').textContent), null, { timeout: 10000 });
    // hovering a sample shows its time, share and request counts
    await p.waitForFunction(() => document.querySelectorAll('#chart .u-series').length > 0);
    const over = p.locator('#chart .u-over');
    const box = await over.boundingBox();
    for (let i = 0; i < 20 && !/requests/.test(await p.locator('#chart-hover').innerText()); i++) {
      await p.mouse.move(box.x + box.width * (0.05 + i * 0.045), box.y + box.height / 2);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(await p.locator('#chart-hover').innerText(), /\d+\.\d\d % · \d+ of \d+ requests/);
    await shot(p, '4-draining');

    // The engine finishes the drain by itself; the page follows live.
    await p.locator('#deployment[data-state="completed"]').waitFor({ timeout: 30000 });
    assert.equal(await p.locator('#reason').innerText(), 'threshold');
    await shot(p, '5-completed');
    await p.goto(hf.base + '/#/');
    await p.locator('.service[data-service="cart"] tr[data-fleet="blue"] .role').waitFor();
    assert.equal(await p.locator('.service[data-service="cart"] tr[data-fleet="blue"] .role').innerText(), 'retired');
    assert.deepEqual(p.cspErrors, []);
  } finally {
    await stop(sim);
    assert.equal(await stop(hf.proc), 0);
  }
});

test('a rollback mid-drain, and a refused action shows the API message', { timeout: 60000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  const sim = await startSim(hf);
  try {
    const d = (await call(hf, 'POST', '/deployments', { service: 'cart', to_fleet: 'green', lowered_ttl_s: 1, lead_s: 0, force: true })).json;
    const p = await page(browser);
    await p.goto(hf.base + '/#/deployments/' + d.id);
    await p.click('#lower');
    await p.click('#modal-confirm');
    await p.locator('#deployment[data-state="ttl_lowered"]').waitFor();
    // Another operator acts meanwhile: the page follows, and its own stale click is refused.
    await call(hf, 'POST', `/deployments/${d.id}/cutover`);
    await p.locator('#deployment[data-state="draining"]').waitFor();
    await p.click('#rollback');
    assert.match(await p.locator('#modal-body').innerText(), /drain back/);
    await p.click('#modal-confirm');
    await p.locator('#deployment[data-state="rolling_back"]').waitFor();
    await p.locator('#deployment[data-state="rolled_back"]').waitFor({ timeout: 30000 });
    // one timeline: the forward drain stays on the chart, the drain back is its own series
    await p.locator('#chart .uplot').waitFor();
    assert.match(await p.locator('#chart').innerText(), /tail % \(blue\)[\s\S]*after rollback \(green\)/);
    await shot(p, '17-rolled-back');
    await p.goto(hf.base + '/#/deployments');
    await p.goto(hf.base + '/#/deployments/new');
    await p.locator('#plan-go').waitFor();
    await p.fill('#lead', '1');
    await p.click('#plan-go');
    // the preview warns first; planning anyway is refused by the server, with its message
    await p.locator('#modal:not([hidden])').waitFor();
    assert.match(await p.locator('#modal-body').innerText(), /shorter than the normal TTL/);
    await p.click('#modal-confirm');
    await p.locator('.error').filter({ hasText: 'shorter than the normal TTL' }).waitFor();
  } finally {
    await stop(sim);
    assert.equal(await stop(hf.proc), 0);
  }
});

test('a viewer token signs in and cannot act', { timeout: 30000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  const viewer = (await call(hf, 'POST', '/tokens', { role: 'viewer', name: 'watcher' })).json.token;
  await call(hf, 'POST', '/tokens', { role: 'admin', name: 'root' });
  try {
    const p = await page(browser);
    await p.goto(hf.base + '/');
    await p.locator('#signin').waitFor();
    await p.fill('#token', viewer);
    await p.click('#signin-go');
    const plan = p.locator('.service[data-service="cart"] button.plan');
    await plan.waitFor();
    assert.ok(await plan.isDisabled());
    assert.match(await plan.getAttribute('title'), /needs the operator role/);
    assert.match(await p.locator('#who').innerText(), /viewer/);
  } finally {
    assert.equal(await stop(hf.proc), 0);
  }
});

test('a NACK appears live, with the proxy error text', { timeout: 30000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  const env = { ...process.env, HOLDFAST_PB_PY: process.env.HOLDFAST_PB_PY || path.join(SRC, 'build/api/pb/py') };
  const p = await page(browser);
  await p.goto(hf.base + '/');
  await p.locator('.service[data-service="cart"]').waitFor();
  const nack = spawn(PY, [path.join(__dirname, 'nack_client.py'), hf.xds, 'envoy-bad'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await p.locator('#nacks .nack[data-proxy="envoy-bad"]').waitFor({ timeout: 15000 });
    assert.match(await p.locator('#nacks').innerText(), /unknown field in override_host_status/);
    await shot(p, '6-nack');
  } finally {
    nack.kill('SIGKILL');
    assert.equal(await stop(hf.proc), 0);
  }
});

test('a rolling restart planned, started, driven and aborted by clicks', { timeout: 60000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  for (let i = 3; i < 10; i++) {
    await call(hf, 'POST', '/services/cart/fleets/blue/endpoints', { address: '127.0.0.1', port: 9100 + i, zone: 'z0' });
  }
  const patched = await call(hf, 'PATCH', '/services/cart', { connection: { max_connection_age_s: 1, drain_timeout_s: 1 } });
  assert.equal(patched.status, 200, JSON.stringify(patched.json));
  try {
    const p = await page(browser);
    await p.goto(hf.base + '/#/restarts');
    await p.locator('#rfleet option').first().waitFor({ state: 'attached' });
    await p.fill('#ravg', '60');
    await p.fill('#rdisc', '10');
    await p.fill('#rdrain', '30');
    await p.fill('#rrs', '1');
    await p.click('#rplan-go');
    await p.locator('#plan-why').waitFor();
    assert.match(await p.locator('#plan-figures').innerText(), /10 batches of 1 endpoint\b/);
    assert.match(await p.locator('#plan-why').innerText(), /10 instances in 10 batches of 1/);
    await shot(p, '7-restart-plan');
    await p.click('#rstart');
    await p.locator('#modal:not([hidden])').waitFor();
    assert.match(await p.locator('#modal-body').innerText(), /10 batches of 1 endpoint.*mark it restarted/s);
    await p.click('#modal-confirm');
    await p.locator('#restart[data-state="running"]').waitFor();
    const id = new URL(p.url()).hash.split('/')[2];
    // batch 1 drains (2 s window), then waits for the orchestrator: here, a click
    const mark = p.locator('tr[data-batch="1"] button.restarted');
    await mark.waitFor({ timeout: 15000 });
    await mark.click();
    await p.locator('tr[data-batch="1"] .badge.done').waitFor({ timeout: 10000 });
    await shot(p, '8-restart-progress');
    // several batches waiting on the operator: the page says so, and one click marks them all
    await p.locator('#rmarkall').waitFor({ timeout: 15000 });
    assert.match(await p.locator('#rstate').innerText(), /waiting on you/);
    const waiting = await p.locator('tr[data-batch]:has(.badge.ready)').evaluateAll((rows) => rows.map((r) => Number(r.dataset.batch)));
    assert.ok(waiting.length >= 2, waiting.join());
    await p.click('#rmarkall');
    await p.waitForFunction((ns) => ns.every((n) => !document.querySelector(`tr[data-batch="${n}"] button.restarted`)), waiting, { timeout: 10000 });
    const marked = (await call(hf, 'GET', '/restarts/' + id)).json.batch_list.filter((b) => waiting.includes(b.n));
    assert.ok(marked.every((b) => b.restarted_at), JSON.stringify(marked));
    await p.click('#rpause');
    await p.locator('#restart[data-state="paused"]').waitFor();
    await p.click('#rabort');
    await p.click('#modal-confirm');
    await p.locator('#restart[data-state="aborted"]').waitFor();
    assert.ok(await p.locator('#rabort').isDisabled());
    const eps = (await call(hf, 'GET', '/services/cart/fleets/blue/endpoints')).json.items;
    assert.deepEqual([...new Set(eps.map((e) => e.admin_state))], ['active']);
    const r = (await call(hf, 'GET', '/restarts/' + id)).json;
    assert.equal(r.batch_list[0].state, 'done');
    assert.deepEqual(p.cspErrors, []);
  } finally {
    assert.equal(await stop(hf.proc), 0);
  }
});
