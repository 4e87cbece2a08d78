// The dashboard in a real browser against the real spoold.
//
// Each test starts build/bin/spoold on free loopback ports (--listen and --http-listen on
// 127.0.0.1:0, ports read from --port-file), fills it with spoolctl, and drives Debian's
// /usr/bin/chromium through playwright-core (which never downloads a browser). Every wait has a
// bound; spoold gets SIGTERM at the end whatever happens. Screenshots land in
// $SPOOL_TEST_ARTIFACTS (default build/test-artifacts/).
//
// Run: tests/dashboard/run.sh   (or: cd tests/dashboard && npm ci && node --test)
// Node 18 or later; plain CommonJS so Debian 12's own node runs it.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const BIN = process.env.SPOOL_BIN_DIR || path.join(REPO, 'build', 'bin');
const ARTIFACTS = process.env.SPOOL_TEST_ARTIFACTS || path.join(REPO, 'build', 'test-artifacts');
const CHROMIUM = process.env.SPOOL_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Loopback only: no proxy may see (or be asked for) the dashboard.
  '--no-proxy-server'];
const UI_TIMEOUT_MS = 15000;   // the page polls every 2 s; a few polls are plenty

// Children see no proxy settings: gRPC (spoolctl) honours http_proxy, and every address here
// is 127.0.0.1.
const CHILD_ENV = Object.fromEntries(Object.entries(process.env)
  .filter(([k]) => !/^(https?|grpc|all|no)_proxy$/i.test(k)));

const running = new Set();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Retries fn until it stops throwing, for at most ms; then throws its last error.
async function eventually(fn, what, ms = UI_TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) {
        e.message = `${what}: still failing after ${ms} ms: ${e.message}`;
        throw e;
      }
      await sleep(200);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// spoold and spoolctl

async function startSpoold(extraArgs = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-dashboard-'));
  const portFile = path.join(dir, 'ports');
  const logPath = path.join(dir, 'spoold.log');
  const log = fs.openSync(logPath, 'a');
  const proc = spawn(path.join(BIN, 'spoold'), [
    '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0',
    '--data-dir', path.join(dir, 'data'), '--port-file', portFile, ...extraArgs,
  ], { stdio: ['ignore', log, log], env: CHILD_ENV });
  fs.closeSync(log);
  running.add(proc);
  let exited = null;
  const done = new Promise((resolve) => proc.on('exit', (code, sig) => {
    exited = { code, sig };
    running.delete(proc);
    resolve();
  }));
  const server = {
    dir, logPath, proc,
    log: () => { try { return fs.readFileSync(logPath, 'utf8'); } catch (e) { return ''; } },
    async stop() {
      if (exited) return;
      proc.kill('SIGTERM');
      const killed = await Promise.race([done.then(() => true), sleep(10000).then(() => false)]);
      if (!killed) { proc.kill('SIGKILL'); await done; }
    },
  };
  // The port file has the gRPC port on line 1 and the HTTP port on line 2.
  const deadline = Date.now() + 30000;
  for (;;) {
    if (exited) throw new Error(`spoold exited (${JSON.stringify(exited)}) before serving:\n${server.log()}`);
    let lines = [];
    try { lines = fs.readFileSync(portFile, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean); } catch (e) { /* not yet */ }
    if (lines.length >= 2) {
      server.grpcPort = Number(lines[0]);
      server.httpPort = Number(lines[1]);
      server.url = `http://127.0.0.1:${server.httpPort}`;
      return server;
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`spoold wrote no two-line port file within 30 s:\n${server.log()}`);
    }
    await sleep(50);
  }
}

// Runs spoolctl against server; resolves to stdout (parsed when --output json is asked for).
function spoolctl(server, args, { token, input } = {}) {
  const env = { ...CHILD_ENV };
  if (token) env.SPOOL_TOKEN = token; else delete env.SPOOL_TOKEN;
  return new Promise((resolve, reject) => {
    const child = execFile(path.join(BIN, 'spoolctl'),
      ['--server', `127.0.0.1:${server.grpcPort}`, '--timeout', '10s', ...args],
      { env, timeout: 20000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`spoolctl ${args.join(' ')}: ${err.message}\n${stderr}`));
        resolve(args.includes('json') ? JSON.parse(stdout) : stdout);
      });
    child.stdin.end(input || '');
  });
}

// A plain HTTP request to spoold; resolves to {status, body (parsed when JSON)}.
function request(server, method, urlPath, { token, body } = {}) {
  return new Promise((resolve, reject) => {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const req = http.request({ host: '127.0.0.1', port: server.httpPort, method, path: urlPath, headers, timeout: 10000 }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { data += c; });
      res.on('end', () => {
        let parsed = data;
        try { parsed = JSON.parse(data); } catch (e) { /* keep the text */ }
        resolve({ status: res.statusCode, headers: res.headers, body: parsed });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within 10 s`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function queueTotal(server, name, token) {
  const r = await request(server, 'GET', `/api/v1/queues/${encodeURIComponent(name)}`, { token });
  assert.equal(r.status, 200, `GET /api/v1/queues/${name}: ${JSON.stringify(r.body)}`);
  return r.body.stats.total;
}

// ---------------------------------------------------------------------------------------------
// The browser

async function openBrowser() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000 });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // Failed requests are checked through their responses below (401 can be expected); any
  // other console error is a problem.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  const failures = [];
  page.on('response', (r) => { if (r.status() >= 400) failures.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
  // Nothing but spoold on 127.0.0.1 may be asked for.
  await page.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1' || u.protocol === 'data:') return route.continue();
    problems.push(`request outside loopback: ${u.href}`);
    return route.abort();
  });
  return { browser, page, problems, failures };
}

function cell(page, queue, col) {
  return page.locator(`[data-testid="queue-row"][data-queue="${queue}"] td[data-col="${col}"]`);
}

async function expectText(locator, expected, what) {
  await eventually(async () => {
    const got = (await locator.textContent({ timeout: 2000 }) || '').trim();
    assert.equal(got, expected);
  }, what);
}

async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, name) });
}

// Runs body with a fresh spoold and browser; on failure saves a screenshot and spoold's log.
// allowedStatus: HTTP error statuses the page may meet (401 before a token is given).
async function withSetup(name, spooldArgs, body, allowedStatus = []) {
  const server = await startSpoold(spooldArgs);
  let b = null;
  try {
    b = await openBrowser();
    await body(server, b.page);
    assert.deepEqual(b.problems, [], 'the page logged errors');
    assert.deepEqual(b.failures.filter((f) => !allowedStatus.includes(Number(f.split(' ')[0]))), [],
      'requests of the page failed');
  } catch (e) {
    if (b) await screenshot(b.page, `dashboard-failure-${name}.png`).catch(() => {});
    e.message += `\n--- spoold log (${server.logPath}) ---\n${server.log().slice(-4000)}`;
    throw e;
  } finally {
    if (b) await b.browser.close().catch(() => {});
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------

test('overview, filter, queue page, redrive, delete and purge', { timeout: 180000 }, async () => {
  await withSetup('main', [], async (server, page) => {
    await spoolctl(server, ['create', 'orders-dead']);
    await spoolctl(server, ['create', 'orders', '--dead-letter', 'orders-dead', '--max-deliveries', '3']);
    await spoolctl(server, ['create', 'thumbnails']);
    const lines = (name, n) => Array.from({ length: n }, (_, i) => JSON.stringify({ file_id: `${name}-${i}`, n: i })).join('\n') + '\n';
    await spoolctl(server, ['send', 'orders', '--lines'], { input: lines('order', 5) });
    await spoolctl(server, ['send', 'orders-dead', '--lines'], { input: lines('dead', 2) });
    await spoolctl(server, ['send', 'thumbnails', '--lines'], { input: lines('thumb', 6) });
    // A payload that would run script if the page injected it as HTML.
    const hostile = '<img src=x onerror="window.__injected=1"><b>bold?</b>';
    await spoolctl(server, ['send', 'thumbnails', hostile]);
    await spoolctl(server, ['lease', 'orders', '--max', '1', '--visibility-timeout', '10m']);

    await page.goto(server.url + '/');
    await page.locator('[data-testid="queue-table"]').waitFor({ state: 'visible' });
    await expectText(cell(page, 'orders', 'ready'), '4', 'orders ready');
    await expectText(cell(page, 'orders', 'leased'), '1', 'orders leased');
    await expectText(cell(page, 'orders', 'total'), '5', 'orders total');
    await expectText(cell(page, 'orders', 'dlq'), 'orders-dead', 'orders dead-letter target');
    await expectText(cell(page, 'orders-dead', 'ready'), '2', 'orders-dead ready');
    await expectText(cell(page, 'orders-dead', 'total'), '2', 'orders-dead total');
    await expectText(cell(page, 'thumbnails', 'ready'), '7', 'thumbnails ready');
    await expectText(cell(page, 'thumbnails', 'total'), '7', 'thumbnails total');
    await eventually(async () => {
      assert.match(await page.locator('[data-testid="totals"]').innerText(), /3\s*queues/i);
    }, 'totals show 3 queues');
    // Rates need two polls; wait for them so the screenshot shows a filled page.
    await expectText(cell(page, 'orders', 'enqueue_rate'), '0/s', 'orders enqueue rate');
    await screenshot(page, 'dashboard-overview.png');

    // Sorting by total puts the biggest queue first.
    await page.locator('[data-testid="queue-table"] th[data-sort="total"]').click();
    await eventually(async () => {
      assert.equal(await page.locator('[data-testid="queue-row"]').first().getAttribute('data-queue'), 'thumbnails');
    }, 'sorted by total');

    await page.locator('[data-testid="filter-input"]').fill('thumb');
    await eventually(async () => {
      const names = await page.locator('[data-testid="queue-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.queue));
      assert.deepEqual(names, ['thumbnails']);
    }, 'filter by name');
    await page.locator('[data-testid="filter-input"]').fill('');
    await eventually(async () => assert.equal(await page.locator('[data-testid="queue-row"]').count(), 3), 'filter cleared');

    // The queue page: peeked messages, payloads shown as text.
    await page.locator('[data-testid="queue-row"][data-queue="thumbnails"] td[data-col="name"] a').click();
    await expectText(page.locator('[data-testid="queue-title"]'), 'thumbnails', 'queue title');
    await eventually(async () => assert.equal(await page.locator('[data-testid="peek-row"]').count(), 7), 'peek rows');
    const peekText = await page.locator('[data-testid="peek-table"]').innerText();
    assert.match(peekText, /"file_id":"thumb-0"/);
    assert.ok(peekText.includes(hostile), 'the hostile payload is shown as text');
    assert.equal(await page.evaluate(() => window.__injected), undefined, 'no payload ran as HTML');
    assert.equal(await page.locator('[data-testid="peek-table"] img').count(), 0);
    await screenshot(page, 'dashboard-queue.png');

    // Ready tab: only ready messages.
    await page.goto(server.url + '/#/queue/orders');
    await expectText(page.locator('[data-testid="queue-title"]'), 'orders', 'orders title');
    await eventually(async () => assert.equal(await page.locator('[data-testid="peek-row"]').count(), 5), 'orders: all 5 peeked');
    await page.locator('#peek-tabs button[data-state="leased"]').click();
    await eventually(async () => assert.equal(await page.locator('[data-testid="peek-row"]').count(), 1), 'orders: 1 leased');

    // Delete one message through the page.
    await page.locator('#peek-tabs button[data-state="ready"]').click();
    await eventually(async () => assert.equal(await page.locator('[data-testid="peek-row"]').count(), 4), 'orders: 4 ready');
    await page.locator('[data-testid="peek-row"] button[data-action="delete"]').first().click();
    await page.locator('[data-testid="delete-confirm-button"]').click();
    await eventually(async () => assert.match(await page.locator('[data-testid="status-line"]').innerText(), /Deleted message/), 'delete reported');
    assert.equal(await queueTotal(server, 'orders'), '4');

    // Redrive: the destination is pre-filled with the queue that dead-letters here.
    await page.goto(server.url + '/#/queue/orders-dead');
    await expectText(page.locator('[data-testid="queue-title"]'), 'orders-dead', 'orders-dead title');
    await eventually(async () => assert.equal(await page.locator('[data-testid="peek-row"]').count(), 2), 'orders-dead peeked');
    await page.locator('[data-testid="redrive-button"]').click();
    assert.equal(await page.locator('[data-testid="redrive-to-input"]').inputValue(), 'orders');
    await page.locator('[data-testid="redrive-confirm-button"]').click();
    await eventually(async () => assert.match(await page.locator('[data-testid="status-line"]').innerText(), /Moved 2 messages from orders-dead to orders/), 'redrive reported');
    assert.equal(await queueTotal(server, 'orders-dead'), '0');
    assert.equal(await queueTotal(server, 'orders'), '6');

    // Purge: the confirm button stays disabled until the exact name is typed.
    await page.goto(server.url + '/#/queue/thumbnails');
    await expectText(page.locator('[data-testid="queue-title"]'), 'thumbnails', 'thumbnails title');
    await page.locator('[data-testid="purge-button"]').click();
    const confirm = page.locator('[data-testid="purge-confirm-button"]');
    assert.equal(await confirm.isDisabled(), true);
    await page.locator('[data-testid="purge-confirm-input"]').fill('thumbnail');
    assert.equal(await confirm.isDisabled(), true, 'a wrong name keeps purge disabled');
    await page.locator('[data-testid="purge-confirm-input"]').fill('thumbnails');
    assert.equal(await confirm.isDisabled(), false);
    await confirm.click();
    await eventually(async () => assert.match(await page.locator('[data-testid="status-line"]').innerText(), /Purged 7 messages from thumbnails/), 'purge reported');
    assert.equal(await queueTotal(server, 'thumbnails'), '0');
    const stats = await spoolctl(server, ['--output', 'json', 'stats', 'thumbnails']);
    assert.equal(stats.stats.total, '0');
    await eventually(async () => assert.equal(await page.locator('[data-testid="peek-row"]').count(), 0), 'peek empty after purge');
    // The other queues are untouched.
    assert.equal(await queueTotal(server, 'orders'), '6');
  });
});

test('with --auth-file the page asks for a token, then shows the queues', { timeout: 120000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-dashboard-auth-'));
  const authFile = path.join(dir, 'tokens');
  // The page's token is admin only (admin does not include produce, so a second token fills
  // the queue).
  fs.writeFileSync(authFile, 'secret-token admin *\nfill-token produce *\n', { mode: 0o600 });
  await withSetup('auth', ['--auth-file', authFile], async (server, page) => {
    const token = 'secret-token';
    await spoolctl(server, ['create', 'billing'], { token });
    await spoolctl(server, ['send', 'billing', '--lines'], { token: 'fill-token', input: 'a\nb\nc\n' });
    assert.equal((await request(server, 'GET', '/api/v1/queues')).status, 401);

    await page.goto(server.url + '/');
    const input = page.locator('[data-testid="token-input"]');
    await input.waitFor({ state: 'visible' });
    assert.equal(await page.locator('[data-testid="queue-row"]').count(), 0);

    // A wrong token: the form comes back with an error.
    await input.fill('not-the-token');
    await page.locator('[data-testid="token-submit"]').click();
    await page.locator('#token-error').waitFor({ state: 'visible' });
    await input.fill(token);
    await page.locator('[data-testid="token-submit"]').click();
    await expectText(cell(page, 'billing', 'ready'), '3', 'billing ready after the token');
    await expectText(cell(page, 'billing', 'total'), '3', 'billing total after the token');
    await page.locator('[data-testid="queue-table"]').waitFor({ state: 'visible' });
    assert.equal(await input.isVisible(), false);

    // The token lives for the tab: a reload keeps it; "forget token" asks again.
    await page.reload();
    await expectText(cell(page, 'billing', 'total'), '3', 'billing after reload');
    await page.locator('#forget-token').click();
    await input.waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('spool.token')), null);
  }, [401]);
  fs.rmSync(dir, { recursive: true, force: true });
});
