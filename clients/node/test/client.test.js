'use strict';
// @spool/client against real spoold processes on 127.0.0.1 (node --test).
const test = require('node:test');
const assert = require('node:assert');
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const spool = require('..');
const { tempSpoold, waitFor, sleep, SOURCE } = require('./spoold');

function client(t, server, options) {
  const c = new spool.Client(server.target, { timeout: 10, ...options });
  t.after(() => c.close());
  return c;
}

test('round trip: JSON, bytes, str, attributes, dedup', async (t) => {
  const server = await tempSpoold(t);
  const q = client(t, server).queue('jobs');
  const info = await q.create({ visibilityTimeout: 30 });
  assert.strictEqual(info.config.visibilityTimeout, 30);
  await assert.rejects(q.create({ visibilityTimeout: 99 }), spool.AlreadyExists);
  assert.strictEqual((await q.create({ visibilityTimeout: 99, existOk: true })).config.visibilityTimeout, 30);
  const ids = [await q.send({ file_id: 'abc-123' }, { dedupId: 'abc-123/resize' }),
    await q.send(Buffer.from([0, 255, 1]), { attributes: { kind: 'raw' } }), await q.send('text é')];
  assert.strictEqual(new Set(ids).size, 3);
  assert.strictEqual(await q.send({ other: 1 }, { dedupId: 'abc-123/resize' }), ids[0]);
  const got = await q.lease({ max: 10, wait: 1 });
  assert.deepStrictEqual(got.map((m) => m.id), ids);
  assert.deepStrictEqual(got[0].json(), { file_id: 'abc-123' });
  assert.deepStrictEqual([...got[1].payload], [0, 255, 1]);
  assert.deepStrictEqual(got[1].attributes, { kind: 'raw' });
  assert.strictEqual(got[2].text(), 'text é');
  assert.strictEqual(got[0].deliveryCount, 1);
  assert.deepStrictEqual(await q.ack(...got), ['OK', 'OK', 'OK']);
  assert.strictEqual((await q.info()).stats.total, 0);
});

test('errors are SpoolError subclasses naming the field', async (t) => {
  const server = await tempSpoold(t);
  const c = client(t, server);
  await assert.rejects(c.queue('nowhere').send('x'), (e) => e instanceof spool.NotFound
    && e instanceof spool.SpoolError && e.code === 'NOT_FOUND' && e.message.includes('"nowhere"'));
  await assert.rejects(c.queue('jobs').create({ visibilityTimeout: 0.5 }),
    (e) => e instanceof spool.InvalidArgument && e.message.includes('visibility_timeout'));
  await assert.rejects(c.queue('jobs').send(undefined), TypeError);
  assert.deepStrictEqual(await c.listQueues(), []);
  const q = c.queue('small');
  await q.create({ maxPayloadBytes: 1024 });
  await assert.rejects(q.send(Buffer.alloc(2000)), spool.InvalidArgument);
  assert.ok(await q.send('fine')); // the stream goes on
});

test('concurrent sends become few Publish requests (spoold counts them)', async (t) => {
  const server = await tempSpoold(t);
  const q = client(t, server).queue('jobs');
  await q.create();
  const metric = 'spool_stream_requests_total{method="Publish"}';
  const before = await server.metric(metric);
  const ids = await Promise.all(Array.from({ length: 2000 }, (_, i) => q.send({ n: i })));
  assert.strictEqual(new Set(ids).size, 2000);
  const requests = (await server.metric(metric)) - before;
  assert.ok(requests >= 2 && requests < 200, `${requests} Publish requests for 2000 sends`);
  assert.strictEqual((await q.info()).stats.ready, 2000);
});

test('sends across a spoold kill -9 are resent and never duplicated', async (t) => {
  const server = await tempSpoold(t);
  const q = client(t, server).queue('jobs');
  await q.create();
  const sends = Array.from({ length: 300 }, (_, i) => q.send(`m${i}`));
  await server.kill();
  await server.start();
  const ids = await Promise.all(sends);
  assert.strictEqual(new Set(ids).size, 300);
  assert.strictEqual((await q.info()).stats.total, 300);
});

test('worker: ack on success, nack with backoff on a throw, Retry, timeout', async (t) => {
  const server = await tempSpoold(t);
  const q = client(t, server).queue('jobs');
  await q.create();
  await q.sendBatch(['ok', 'flaky', 'later', 'hangs']);
  const seen = [];
  const errors = [];
  const w = q.worker(async (job) => {
    seen.push([job.text(), job.deliveryCount, Date.now()]);
    if (job.deliveryCount > 1) return;
    if (job.text() === 'flaky') throw new Error('first try fails');
    if (job.text() === 'later') throw new spool.Retry(2);
    if (job.text() === 'hangs') await sleep(3000);
  }, { concurrency: 4, retryBackoff: [1, 300], timeout: 0.5, onError: (job, e) => errors.push(e.message) });
  t.after(() => w.close(5));
  await waitFor(() => w.stats().acked === 4, 20, '4 acks');
  const at = (text, dc) => seen.find((s) => s[0] === text && s[1] === dc)[2];
  assert.ok(at('flaky', 2) - at('flaky', 1) >= 900);
  assert.ok(at('later', 2) - at('later', 1) >= 1900);
  const s = w.stats();
  assert.deepStrictEqual([s.succeeded, s.failed, s.retried, s.timedOut], [4, 1, 1, 1]);
  assert.ok(errors.some((m) => m.includes('first try fails')));
  assert.strictEqual((await q.info()).stats.total, 0);
});

test('a job longer than 3 visibility timeouts is not redelivered', async (t) => {
  const server = await tempSpoold(t);
  const q = client(t, server).queue('jobs');
  await q.create({ visibilityTimeout: 1 });
  await q.send('slow');
  const runs = [];
  const w = q.worker(async (job) => { runs.push(job.deliveryCount); await sleep(3500); }, { concurrency: 2 });
  t.after(() => w.close(5));
  await waitFor(() => w.stats().acked === 1, 20, 'the slow job\'s ack');
  assert.deepStrictEqual(runs, [1]);
});

test('a poison job ends in the dead-letter queue', async (t) => {
  const server = await tempSpoold(t);
  const c = client(t, server);
  await c.queue('jobs-dead').create();
  const q = c.queue('jobs');
  await q.create({ maxDeliveries: 3, deadLetterQueue: 'jobs-dead' });
  await q.send('poison');
  const w = q.worker(async () => { throw new Error('cannot parse'); }, { retryBackoff: [0.1, 0.1], onError: () => {} });
  t.after(() => w.close(5));
  await waitFor(async () => (await c.queue('jobs-dead').info()).stats.ready === 1, 20, 'the dead-lettered job');
  assert.strictEqual(w.stats().failed, 3);
});

test('a worker on an unknown queue stops with NotFound', async (t) => {
  const server = await tempSpoold(t);
  const w = client(t, server).queue('nowhere').worker(async () => {}, { onError: () => {} });
  await assert.rejects(w.done(), spool.NotFound);
});

test('spoold killed and restarted under a running worker: nothing lost, each acked once', async (t) => {
  const server = await tempSpoold(t);
  const q = client(t, server).queue('jobs');
  await q.create({ visibilityTimeout: 2 });
  const n = 40;
  await q.sendBatch(Array.from({ length: n }, (_, i) => String(i)));
  const done = [];
  const w = q.worker(async (job) => { await sleep(50); done.push(job.text()); }, { concurrency: 4, onError: () => {} });
  t.after(() => w.close(5));
  await waitFor(() => done.length >= 10, 20, '10 jobs done');
  await server.kill();
  await sleep(300);
  await server.start();
  await waitFor(async () => (await q.info()).stats.total === 0, 30, 'the queue to drain');
  assert.ok(w.stats().reconnects >= 1);
  assert.deepStrictEqual(new Set(done), new Set(Array.from({ length: n }, (_, i) => String(i))));
  assert.strictEqual((await q.info()).stats.ackedTotal, n);
});

function workerProcess(t, server, dir, script) {
  const file = path.join(dir, 'worker.js');
  fs.writeFileSync(file, `const spool = require(${JSON.stringify(path.resolve(__dirname, '..'))});
const fs = require('fs');
const q = new spool.Client(${JSON.stringify(server.target)}).queue('jobs');
${script}`);
  const p = spawn(process.execPath, [file], { cwd: dir, stdio: 'inherit' });
  t.after(() => { if (p.exitCode === null) p.kill('SIGKILL'); });
  return p;
}
const lines = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

test('a worker process killed mid-job: another takes the job within a second', async (t) => {
  const server = await tempSpoold(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-node-w-'));
  const q = client(t, server).queue('jobs');
  await q.create({ visibilityTimeout: 60 });
  await q.send('the job');
  const p = workerProcess(t, server, dir, `q.worker(async (job) => {
  fs.appendFileSync('started', job.id + '\\n'); await new Promise((r) => setTimeout(r, 60000)); });`);
  await waitFor(() => lines(path.join(dir, 'started')).length === 1, 20, 'the job to start');
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));
  const killed = Date.now();
  const taken = [];
  const w = q.worker(async () => { taken.push(Date.now()); });
  t.after(() => w.close(5));
  await waitFor(() => taken.length === 1, 5, 'another worker to take the job');
  assert.ok(taken[0] - killed < 1000, `${taken[0] - killed} ms`);
});

test('SIGTERM: running jobs finish, the rest are released, exit 0', async (t) => {
  const server = await tempSpoold(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-node-w-'));
  const q = client(t, server).queue('jobs');
  await q.create({ visibilityTimeout: 60 });
  await q.sendBatch(Array.from({ length: 10 }, (_, i) => String(i)));
  const p = workerProcess(t, server, dir, `const w = q.worker(async (job) => {
  fs.appendFileSync('started', job.text() + '\\n');
  await new Promise((r) => setTimeout(r, 1500));
  fs.appendFileSync('finished', job.text() + '\\n');
}, { concurrency: 2, maxOutstanding: 4 });
process.on('SIGTERM', async () => { await w.close(); process.exit(0); });`);
  await waitFor(() => lines(path.join(dir, 'started')).length === 2, 20, 'two jobs to start');
  p.kill('SIGTERM');
  const code = await new Promise((r) => p.once('exit', r));
  assert.strictEqual(code, 0);
  assert.deepStrictEqual(lines(path.join(dir, 'finished')).sort(), lines(path.join(dir, 'started')).sort());
  const s = (await q.info()).stats;
  assert.deepStrictEqual([s.total, s.ready, s.leased], [8, 8, 0]);
});

test('tokens and TLS', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-node-tls-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync('/usr/bin/python3', ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(path.join(SOURCE, 'tests'))})
from certs import make_ca, make_cert
make_ca(${JSON.stringify(dir)}, "ca"); make_cert(${JSON.stringify(dir)}, "ca", "server"); make_cert(${JSON.stringify(dir)}, "ca", "client")`]);
  fs.writeFileSync(path.join(dir, 'tokens'), 'tok-ops admin,produce,consume *\ntok-up produce jobs\n');
  const authed = await tempSpoold(t, ['--auth-file', path.join(dir, 'tokens')]);
  await assert.rejects(client(t, authed).queue('jobs').create(), spool.Unauthenticated);
  await client(t, authed, { token: 'tok-ops' }).queue('jobs').create();
  const up = client(t, authed, { token: 'tok-up' }).queue('jobs');
  assert.ok(await up.send('x'));
  await assert.rejects(up.lease(), spool.PermissionDenied);
  const f = (n) => path.join(dir, n);
  const tls = await tempSpoold(t, ['--tls-cert', f('server.pem'), '--tls-key', f('server.key'), '--tls-client-ca', f('ca.pem')]);
  await assert.rejects(client(t, tls, { tls: { ca: f('ca.pem') }, retryFor: 0, timeout: 3 }).queue('jobs').create(), spool.Unavailable);
  const m = client(t, tls, { tls: { ca: f('ca.pem'), cert: f('client.pem'), key: fs.readFileSync(f('client.key')) } });
  await m.queue('jobs').create();
  assert.ok(await m.queue('jobs').send('over mutual tls'));
  assert.throws(() => new spool.Client(tls.target, { tls: { ca: f('ca.pem'), cert: f('client.pem') } }), TypeError);
});
