// Browser tests of the web UI during incidents (issue 15): real headless Chromium against the real
// holdfast, with real ADS clients (tests/browser/*.py on Debian's python3-grpcio), the fleet
// simulator and real holdfast-shims health checking real TCP listeners.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const net = require('node:net');
const { SHIM, freePort, startHoldfast, call, world, startSim, startClient, stop, launch, page, shot } = require('./harness');

let browser;
test.before(async () => { browser = await launch(); });
test.after(async () => { await browser.close(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('a proxy that ACKed an old version and never the new one is not shown as in sync', { timeout: 60000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  const stuck = await startClient('stuck_client.py', [hf.xds, 'envoy-stuck']);
  try {
    const p = await page(browser);
    await p.goto(hf.base + '/');
    const cds = p.locator('tr[data-proxy="envoy-stuck"] td[data-type="cds"] .badge');
    await p.locator('tr[data-proxy="envoy-stuck"] td[data-type="cds"] [data-sync="SYNCED"]').waitFor({ timeout: 15000 });
    assert.equal(await p.locator('.pgroup[data-group="edge"] .insync').innerText(), 'in sync 1 of 1');
    // A new cluster: CDS changes; the proxy is sent it and never answers.
    assert.equal((await call(hf, 'POST', '/services', { name: 'search', proxy_group: 'edge' })).status, 201);
    await p.locator('tr[data-proxy="envoy-stuck"] td[data-type="cds"] [data-sync="PENDING"]').waitFor({ timeout: 15000 });
    assert.match(await cds.innerText(), /PENDING \d+ s/);
    assert.match(await cds.getAttribute('title'), /sent \w+ .*ACKed \w+ .*current \w+/);
    assert.equal(await p.locator('.pgroup[data-group="edge"] .insync').innerText(), 'in sync 0 of 1');
    await p.locator('#strip .inc', { hasText: 'not in sync' }).waitFor();
    await p.locator('#proxies').scrollIntoViewIfNeeded();
    await shot(p, '9-stuck-proxy', false);
    assert.deepEqual(p.consoleErrors, []);
  } finally {
    stuck.kill('SIGKILL');
    assert.equal(await stop(hf.proc), 0);
  }
});

test('while holdfast is down the page says it is stale and cannot act; it reloads when holdfast is back', { timeout: 60000 }, async () => {
  let hf = await startHoldfast();
  await world(hf);
  const p = await page(browser);
  try {
    await p.goto(hf.base + '/');
    await p.locator('.service[data-service="cart"] button.plan').waitFor();
    assert.match(await p.locator('#asof').innerText(), /^as of \d\d:\d\d:\d\d$/);
    assert.equal(await stop(hf.proc), 0);
    await p.locator('#asof.stale').waitFor({ timeout: 10000 });
    assert.match(await p.locator('#asof').innerText(), /STALE · as of/);
    assert.match(await p.locator('#banner').innerText(), /unreachable since .* actions are disabled/);
    assert.ok(await p.locator('.service[data-service="cart"] button.plan').isDisabled());
    assert.ok(await p.locator('tr[data-ep="127.0.0.1:9100"] button[data-to="draining"]').first().isDisabled());
    await shot(p, '13-outage', false);
    // A tab that navigates during the outage says so, and loads once holdfast is back.
    await p.evaluate(() => { location.hash = '#/events'; });
    await p.locator('#unreachable').waitFor({ timeout: 10000 });
    await sleep(1500);
    assert.equal(await p.locator('#banner').isVisible(), true);
    hf = await startHoldfast(hf);
    await p.locator('#events tr.ev').first().waitFor({ timeout: 15000 });
    await p.locator('#banner').waitFor({ state: 'hidden' });
    assert.doesNotMatch(await p.locator('#asof').innerText(), /STALE/);
    // the event stream is back too: a change made now appears without a reload
    await sleep(500);
    assert.equal((await call(hf, 'POST', '/services/cart/fleets/blue/endpoints', { address: '127.0.0.1', port: 9177 })).status, 201);
    await p.locator('#events tr.ev', { hasText: '9177' }).first().waitFor({ timeout: 10000 });
  } finally {
    assert.equal(await stop(hf.proc), 0);
  }
});

test('draining and disabling endpoints by clicks reaches EDS', { timeout: 60000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  let eds = {};
  const watch = await startClient('eds_watch.py', [hf.xds, 'envoy-eds', 'cart'], (l) => { eds = JSON.parse(l); });
  const until = async (fn, what) => {
    for (let i = 0; i < 150 && !fn(eds); i++) await sleep(100);
    assert.ok(fn(eds), `${what}: EDS is ${JSON.stringify(eds)}`);
  };
  try {
    await until((e) => e['9100'] && e['9101'], 'blue in EDS');
    const p = await page(browser);
    await p.goto(hf.base + '/');
    const blue = p.locator('.fleet-eps[data-fleet="blue"]');
    await blue.locator('tr[data-ep="127.0.0.1:9100"] button[data-to="draining"]').click();
    await p.locator('#modal:not([hidden])').waitFor();
    assert.match(await p.locator('#modal-title').innerText(), /Drain 1 endpoint of cart\/blue/);
    assert.match(await p.locator('#modal-body').innerText(), /127\.0\.0\.1:9100 active → draining/);
    await shot(p, '10-endpoint-drain-confirm', false);
    await p.click('#modal-confirm');
    await until((e) => e['9100'] === 'DRAINING', 'drained endpoint');
    await blue.locator('tr[data-ep="127.0.0.1:9100"] .badge.draining').waitFor();
    // bulk: two selected endpoints disabled at once
    await blue.locator('tr[data-ep="127.0.0.1:9101"] input.sel').check();
    await blue.locator('tr[data-ep="127.0.0.1:9102"] input.sel').check();
    const bulk = blue.locator('button.bulk-act[data-to="disabled"]');
    assert.match(await bulk.innerText(), /2 selected/);
    await bulk.click();
    await p.locator('#modal:not([hidden])').waitFor();
    const body = await p.locator('#modal-body').innerText();
    assert.match(body, /9101 active → disabled/);
    assert.match(body, /9102 active → disabled/);
    assert.match(body, /keeps 0 of 3 endpoints serving/);
    await p.click('#modal-confirm');
    await until((e) => e['9100'] === 'DRAINING' && !e['9101'] && !e['9102'], 'disabled endpoints leave EDS');
    const states = (await call(hf, 'GET', '/services/cart/fleets/blue/endpoints')).json.items.map((e) => e.admin_state);
    assert.deepEqual(states, ['draining', 'disabled', 'disabled']);
    await p.locator('#strip .inc', { hasText: 'active fleet with no serving endpoint' }).waitFor({ timeout: 10000 });
    assert.deepEqual(p.consoleErrors, []);
  } finally {
    watch.kill('SIGKILL');
    assert.equal(await stop(hf.proc), 0);
  }
});

test('the incident strip counts an endpoint the health checkers evicted', { timeout: 60000 }, async () => {
  const hf = await startHoldfast();
  const servers = [];
  const shims = [];
  try {
    await call(hf, 'POST', '/proxy-groups', { name: 'edge', listener_port: 10000 });
    assert.equal((await call(hf, 'POST', '/services', { name: 'db', proxy_group: 'edge',
      health_check: { protocol: 'tcp', interval_ms: 200, timeout_ms: 150, unhealthy_threshold: 2, healthy_threshold: 1 } })).status, 201);
    await call(hf, 'POST', '/services/db/fleets', { name: 'main' });
    const ports = [];
    for (let i = 0; i < 2; i++) { /* real TCP listeners */
      const s = net.createServer((c) => c.destroy());
      await new Promise((r) => s.listen(0, '127.0.0.1', r));
      servers.push(s);
      ports.push(s.address().port);
    }
    const dead = await freePort(); /* nothing listens there */
    for (const port of [...ports, dead]) await call(hf, 'POST', '/services/db/fleets/main/endpoints', { address: '127.0.0.1', port, zone: 'z1' });
    for (const [id, zone] of [['shim-a', 'z1'], ['shim-b', 'z2']]) {
      shims.push(spawn(SHIM, ['--server', hf.xds, '--node-id', id, '--zone', zone], { stdio: 'ignore' }));
    }
    const p = await page(browser);
    await p.goto(hf.base + '/');
    const evicted = p.locator('#strip .inc', { hasText: 'evicted endpoint' });
    await evicted.waitFor({ timeout: 20000 });
    assert.match(await evicted.innerText(), /^1 evicted endpoint/);
    await p.locator('#strip .chip', { hasText: 'db/main 2/3' }).waitFor({ timeout: 10000 });
    await p.locator(`tr[data-ep="127.0.0.1:${dead}"] .badge.unhealthy`).waitFor();
    await shot(p, '11-incident-strip', false);
    await evicted.click();
    await p.waitForFunction(() => document.querySelector('#filter') && document.querySelector('#filter').value === 'unhealthy');
    await p.locator(`.fleet-eps[data-fleet="main"] tr.ep[data-ep="127.0.0.1:${dead}"]`).waitFor();
    assert.equal(await p.locator('.fleet-eps[data-fleet="main"] tr.ep').count(), 1);
    assert.deepEqual(p.consoleErrors, []);
  } finally {
    for (const s of shims) assert.equal(await stop(s), 0);
    servers.forEach((s) => s.close());
    assert.equal(await stop(hf.proc), 0);
  }
});

test('a 200-endpoint fleet fits in two screens, problems first; the filter works; live updates keep what is open', { timeout: 90000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  try {
    for (let port = 9103; port < 9300; port++) {
      if (port >= 9200 && port < 9203) continue; /* green's */
      await call(hf, 'POST', '/services/cart/fleets/blue/endpoints', { address: '127.0.0.1', port, zone: 'z0' });
    }
    for (const port of [9150, 9170, 9290]) {
      await call(hf, 'PATCH', `/services/cart/fleets/blue/endpoints/127.0.0.1:${port}`, { admin_state: 'draining' });
    }
    const blueCount = (await call(hf, 'GET', '/services/cart/fleets/blue/endpoints')).json.items.length;
    assert.equal(blueCount, 197);
    for (let port = 9300; port < 9303; port++) await call(hf, 'POST', '/services/cart/fleets/blue/endpoints', { address: '127.0.0.1', port });
    const p = await page(browser);
    await p.goto(hf.base + '/');
    const blue = p.locator('.fleet-eps[data-fleet="blue"]');
    await blue.waitFor();
    const height = await p.evaluate(() => document.documentElement.scrollHeight);
    assert.ok(height <= 2 * 900, `the overview is ${height} px high`);
    assert.match(await blue.locator('details summary').innerText(), /all 200 endpoints/);
    const first = await blue.locator(':scope > .scroll tr.ep').evaluateAll((rows) => rows.map((r) => r.dataset.ep));
    assert.deepEqual(first, ['127.0.0.1:9150', '127.0.0.1:9170', '127.0.0.1:9290']);
    await shot(p, '12-big-fleet');
    // the operator opens the full list and scrolls; a live change keeps both
    await blue.locator('details summary').click();
    await p.evaluate(() => window.scrollTo(0, 600));
    await call(hf, 'PATCH', '/services/cart/fleets/blue/endpoints/127.0.0.1:9111', { admin_state: 'disabled' });
    await blue.locator(':scope > .scroll tr.ep[data-ep="127.0.0.1:9111"]').waitFor({ timeout: 10000 });
    assert.ok(await blue.locator('details').evaluate((d) => d.open), 'the open list stays open');
    assert.equal(await p.evaluate(() => window.scrollY), 600);
    // the filter
    await p.fill('#filter', '9177');
    await blue.locator('tr.ep').first().waitFor();
    assert.deepEqual(await blue.locator('tr.ep').evaluateAll((rows) => rows.map((r) => r.dataset.ep)), ['127.0.0.1:9177']);
    await p.fill('#filter', 'draining');
    assert.deepEqual(await blue.locator('tr.ep').evaluateAll((rows) => rows.map((r) => r.dataset.ep)), ['127.0.0.1:9150', '127.0.0.1:9170', '127.0.0.1:9290']);
    assert.deepEqual(p.consoleErrors, []);
  } finally {
    assert.equal(await stop(hf.proc), 0);
  }
});

test('every page: no console error, and no horizontal overflow at 390 px', { timeout: 120000 }, async () => {
  const hf = await startHoldfast();
  let sim;
  try {
    const wide = await page(browser);
    const phone = await page(browser, { width: 390, height: 844 });
    // what a browser asks for by itself
    const head = await fetch(hf.base + '/', { method: 'HEAD' });
    assert.equal(head.status, 200);
    const icon = await fetch(hf.base + '/favicon.ico');
    assert.equal(icon.status, 200);
    assert.equal(icon.headers.get('content-type'), 'image/svg+xml');
    // an empty database says what to do first
    await wide.goto(hf.base + '/');
    await wide.locator('#empty').waitFor();
    await wide.goto(hf.base + '/#/deployments/new');
    await wide.locator('#plan-empty').waitFor();
    await world(hf);
    await call(hf, 'POST', '/services', { name: 'search', proxy_group: 'edge' });
    await call(hf, 'POST', '/services/search/fleets', { name: 'main' });
    for (let i = 0; i < 10; i++) await call(hf, 'POST', '/services/search/fleets/main/endpoints', { address: '127.0.0.1', port: 9400 + i });
    await call(hf, 'PATCH', '/services/search', { connection: { max_connection_age_s: 1, drain_timeout_s: 1 } });
    sim = await startSim(hf);
    const d = (await call(hf, 'POST', '/deployments', { service: 'cart', to_fleet: 'green', lowered_ttl_s: 1, lead_s: 0, force: true })).json;
    await call(hf, 'POST', `/deployments/${d.id}/lower-ttl`);
    await call(hf, 'POST', `/deployments/${d.id}/cutover`);
    const r = (await call(hf, 'POST', '/restarts', { service: 'search', fleet: 'main', avg_connection_s: 60, max_disconnect_pct: 10, max_draining_pct: 30, restart_s: 1, dry_run: false })).json;
    assert.ok(r.id, JSON.stringify(r));
    const pages = ['#/', '#/deployments', '#/deployments/new', `#/deployments/${d.id}`, '#/restarts', `#/restarts/${r.id}`, '#/events'];
    for (const p of [wide, phone]) {
      for (const h of pages) {
        await p.goto(hf.base + '/' + h);
        await p.waitForFunction(() => /as of/.test(document.querySelector('#asof').textContent) && document.querySelector('#strip').children.length > 0, null, { timeout: 10000 });
        await sleep(300);
        const over = await p.evaluate(() => ({ doc: document.documentElement.scrollWidth, win: window.innerWidth }));
        assert.ok(over.doc <= over.win, `${h} at ${over.win} px is ${over.doc} px wide`);
        await p.evaluate(() => window.scrollTo(0, 0));
        if (p === phone && ['#/', `#/deployments/${d.id}`].includes(h)) await shot(p, h === '#/' ? '14-phone-overview' : '15-phone-deployment', false);
        if (p === wide && h === '#/events') await shot(p, '16-events', false);
      }
    }
    assert.deepEqual(wide.consoleErrors, []);
    assert.deepEqual(phone.consoleErrors, []);
    // with tokens: the sign-in page fits, Enter submits the token, and one can sign out
    const admin = (await call(hf, 'POST', '/tokens', { role: 'admin', name: 'root' })).json.token;
    await phone.goto(hf.base + '/');
    await phone.evaluate(() => location.reload());
    await phone.locator('#signin').waitFor();
    assert.ok(await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
    await phone.fill('#token', admin);
    await phone.press('#token', 'Enter');
    await phone.locator('#signout').waitFor();
    assert.match(await phone.locator('#who').innerText(), /admin/);
    await phone.click('#signout');
    await phone.locator('#signin').waitFor();
    assert.equal(await phone.evaluate(() => sessionStorage.getItem('holdfast-token')), null);
  } finally {
    if (sim) await stop(sim);
    assert.equal(await stop(hf.proc), 0);
  }
});

test('events: filtered by service on the server (deployments included), by action, paged back, linked', { timeout: 60000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  try {
    await call(hf, 'POST', '/services', { name: 'cartx', proxy_group: 'edge' });
    await call(hf, 'POST', '/services/cartx/fleets', { name: 'main' });
    for (let i = 0; i < 120; i++) await call(hf, 'POST', '/services/cartx/fleets/main/endpoints', { address: '127.0.0.1', port: 10000 + i });
    const d = (await call(hf, 'POST', '/deployments', { service: 'cart', to_fleet: 'green', lead_s: 0, force: true })).json;
    await call(hf, 'POST', `/deployments/${d.id}/abort`);
    const total = (await call(hf, 'GET', '/events?limit=1000')).json.items.length;
    const p = await page(browser);
    await p.goto(hf.base + '/#/events');
    await p.locator('#events tr.ev').first().waitFor();
    assert.equal(await p.locator('#events tr.ev').count(), 100);
    assert.equal(await p.locator('#events tr.ev').first().getAttribute('data-action'), 'deployment.abort');
    await p.click('#older');
    await p.waitForFunction((n) => document.querySelectorAll('#events tr.ev').length === n, total);
    assert.ok(await p.locator('#older').isDisabled());
    await p.selectOption('#filter', 'cart');
    await p.waitForFunction(() => document.querySelectorAll('#events tr.ev').length < 100);
    const actions = await p.locator('#events tr.ev').evaluateAll((rows) => rows.map((r) => r.dataset.action));
    assert.ok(actions.includes('deployment.abort') && actions.includes('deployment.plan'), actions.join());
    assert.equal(await p.locator('#events tr.ev', { hasText: 'cartx' }).count(), 0);
    await p.fill('#faction', 'deployment.');
    await p.waitForFunction(() => [...document.querySelectorAll('#events tr.ev')].every((r) => r.dataset.action.startsWith('deployment.')));
    assert.equal(await p.locator('#events tr.ev').count(), 2);
    assert.ok(await p.locator('#events tr.ev.sev-bad', { hasText: 'deployment.abort' }).count() === 1);
    await p.locator('#events tr.ev a', { hasText: d.id }).first().click();
    await p.locator(`#deployment[data-state="aborted"]`).waitFor();
    assert.deepEqual(p.consoleErrors, []);
  } finally {
    assert.equal(await stop(hf.proc), 0);
  }
});

test('the plan preview warns when the new fleet has less capacity, before anything is created', { timeout: 30000 }, async () => {
  const hf = await startHoldfast();
  await world(hf);
  try {
    for (const port of [9201, 9202]) await call(hf, 'PATCH', `/services/cart/fleets/green/endpoints/127.0.0.1:${port}`, { admin_state: 'disabled' });
    const p = await page(browser);
    await p.goto(hf.base + '/#/deployments/new?service=cart');
    await p.locator('#to option').first().waitFor({ state: 'attached' });
    await p.click('#plan-check');
    await p.locator('#preview .capacity').first().waitFor();
    assert.match(await p.locator('#preview').innerText(), /green has 1 serving endpoint against 3 in blue/);
    assert.match(await p.locator('#preview-figures').innerText(), /4 s → 4 s during the deployment/);
    assert.equal((await call(hf, 'GET', '/deployments')).json.items.length, 0, 'a preview creates nothing');
    await p.click('#plan-go');
    await p.locator('#modal:not([hidden])').waitFor();
    assert.match(await p.locator('#modal-body').innerText(), /less capacity/);
    assert.equal(await p.locator('#modal-confirm').getAttribute('class'), 'primary');
    await p.click('#modal-cancel');
    assert.equal((await call(hf, 'GET', '/deployments')).json.items.length, 0, 'cancelled: nothing planned');
    await shot(p, '2-plan-preview');
    assert.deepEqual(p.consoleErrors, []);
  } finally {
    assert.equal(await stop(hf.proc), 0);
  }
});

test('an outage during a drain is a gap on the tail chart, not a straight line', { timeout: 90000 }, async () => {
  let hf = await startHoldfast();
  await world(hf);
  const sim = await startSim(hf, ['--session', '60']); /* long sessions: a slow drain */
  try {
    const d = (await call(hf, 'POST', '/deployments', { service: 'cart', to_fleet: 'green', lowered_ttl_s: 4, lead_s: 0, force: true, tail_threshold_pct: 0.1, deadline_factor: 10 })).json;
    assert.ok(d.id, JSON.stringify(d));
    await call(hf, 'POST', `/deployments/${d.id}/lower-ttl`);
    await sleep(3000); /* sessions start on blue */
    await call(hf, 'POST', `/deployments/${d.id}/cutover`);
    const p = await page(browser);
    await p.goto(hf.base + '/#/deployments/' + d.id);
    await p.locator('#chart .uplot').waitFor();
    const samples = async () => (await call(hf, 'GET', '/deployments/' + d.id)).json.tail.length;
    for (let i = 0; i < 50 && (await samples()) < 3; i++) await sleep(200);
    const now = (await call(hf, 'GET', '/deployments/' + d.id)).json;
    assert.equal(now.state, 'draining', JSON.stringify({ state: now.state, reason: now.finish_reason, tail: now.tail.map((s) => s.pct) }));
    assert.equal(await p.locator('#chart').getAttribute('data-gaps'), '0');
    assert.equal(await stop(hf.proc), 0);
    await p.locator('#asof.stale').waitFor({ timeout: 10000 });
    assert.ok(await p.locator('#finish').isDisabled(), 'no action while holdfast is down');
    await sleep(3000);
    hf = await startHoldfast(hf);
    await p.locator('#asof:not(.stale)').waitFor({ timeout: 15000 });
    await p.waitForFunction(() => Number(document.querySelector('#chart').dataset.gaps) >= 1, null, { timeout: 20000 });
    await shot(p, '18-drain-with-outage', false);
    assert.deepEqual(p.consoleErrors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(e)), []);
  } finally {
    await stop(sim);
    assert.equal(await stop(hf.proc), 0);
  }
});
