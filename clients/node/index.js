'use strict';
// Spool's Node client: send jobs with `await q.send(obj)`, run workers with
// `q.worker(async job => {...})`. See README.md. One gRPC channel per Client; the contract
// (proto/spool/v1/queue.proto) is loaded at run time.

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The proto ships inside the package (copied at `npm pack`); in the source tree it is read
// from the repository's proto/ directory.
function protoRoot() {
  for (const dir of [path.join(__dirname, 'proto'), path.join(__dirname, '..', '..', 'proto')]) {
    if (fs.existsSync(path.join(dir, 'spool', 'v1', 'queue.proto'))) return dir;
  }
  throw new Error('@spool/client: spool/v1/queue.proto not found beside the package');
}

let service = null;
function loadService() {
  if (service === null) {
    const root = protoRoot();
    const def = protoLoader.loadSync(path.join(root, 'spool', 'v1', 'queue.proto'), {
      includeDirs: [root], keepCase: false, longs: String, enums: String, defaults: true,
      oneofs: true,
    });
    service = grpc.loadPackageDefinition(def).spool.v1.QueueService;
  }
  return service;
}

// ---- errors ----

class SpoolError extends Error {
  constructor(message, code = 'UNKNOWN') {
    super(message);
    this.name = this.constructor.name;
    this.code = code;
  }
}
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));
const ERROR_CLASSES = {};
for (const code of ['INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'UNAUTHENTICATED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'UNAVAILABLE',
  'DEADLINE_EXCEEDED', 'CANCELLED']) {
  const name = code.toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase());
  ERROR_CLASSES[code] = {
    [name]: class extends SpoolError { constructor(message) { super(message, code); } },
  }[name];
}
function errorFor(codeNumber, message) {
  const code = CODE_NAMES[codeNumber] || 'UNKNOWN';
  const Cls = ERROR_CLASSES[code];
  return Cls ? new Cls(message) : new SpoolError(message, code);
}
function fromGrpc(e) {
  return errorFor(e.code, e.details || e.message);
}
const FATAL = new Set(['INVALID_ARGUMENT', 'NOT_FOUND', 'PERMISSION_DENIED', 'UNAUTHENTICATED']);

// ---- values ----

function payloadBytes(payload) {
  if (Buffer.isBuffer(payload)) return payload;
  if (payload instanceof Uint8Array) return Buffer.from(payload);
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (payload === undefined) throw new TypeError('payload: required');
  return Buffer.from(JSON.stringify(payload), 'utf8');
}
function duration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) {
    throw new TypeError(`a duration in seconds (a number >= 0), not ${seconds}`);
  }
  const whole = Math.floor(seconds);
  return { seconds: String(whole), nanos: Math.round((seconds - whole) * 1e9) };
}
function fromDuration(d) {
  return d ? Number(d.seconds) + d.nanos / 1e9 : 0;
}
const DURATIONS = ['visibilityTimeout', 'retention', 'delay', 'dedupWindow'];
const NUMBERS = ['maxDeliveries', 'maxPayloadBytes', 'maxDepth'];
function queueConfig(options) {
  const c = {};
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined || v === null || k === 'existOk') continue;
    if (DURATIONS.includes(k)) c[k] = duration(v);
    else if (NUMBERS.includes(k)) c[k] = String(v);
    else if (k === 'deadLetterQueue') c[k] = v;
    else throw new TypeError(`unknown queue setting ${k}; known: ${[...DURATIONS, ...NUMBERS, 'deadLetterQueue'].join(', ')}`);
  }
  return c;
}
function queueInfo(q) {
  const config = { deadLetterQueue: q.config.deadLetterQueue };
  for (const k of DURATIONS) config[k] = fromDuration(q.config[k]);
  for (const k of NUMBERS) config[k] = Number(q.config[k]);
  const stats = {};
  for (const [k, v] of Object.entries(q.stats || {})) {
    stats[k] = k === 'oldestReadyAge' ? fromDuration(v) : Number(v);
  }
  return { name: q.name, config, stats };
}
function entry(payload, options = {}) {
  const e = { payload: payloadBytes(payload), attributes: options.attributes || {},
    dedupId: options.dedupId || crypto.randomUUID() };
  if (options.delay !== undefined) e.delay = duration(options.delay);
  return e;
}

class Message {
  constructor(queue, m) {
    this.queue = queue;
    this.id = m.messageId;
    this.payload = m.payload;
    this.attributes = m.attributes;
    this.receipt = m.receipt;
    this.deliveryCount = m.deliveryCount;
    this.enqueueTime = m.enqueueTime ? new Date(Number(m.enqueueTime.seconds) * 1000 + m.enqueueTime.nanos / 1e6) : null;
  }
  json() { return JSON.parse(this.payload.toString('utf8')); }
  text() { return this.payload.toString('utf8'); }
}

class Retry extends Error {
  constructor(after = 0, reason = '') {
    super(reason || `retry after ${after} s`);
    this.name = 'Retry';
    this.after = after;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const jitter = (attempt, base, cap) => Math.random() * Math.min(cap, base * 2 ** attempt);

// ---- the client ----

class Client {
  // target: "host:port"; options: token, tls ({ca, cert, key}: PEM Buffers or file paths),
  // timeout (s, per call), retryFor (s a send retries while spoold is unavailable).
  constructor(target = '127.0.0.1:7420', options = {}) {
    this.target = target;
    this.timeout = options.timeout ?? 30;
    this.retryFor = options.retryFor ?? 30;
    let creds = grpc.credentials.createInsecure();
    if (options.tls) {
      const read = (x) => (x === undefined || x === null ? null : Buffer.isBuffer(x) ? x : fs.readFileSync(x));
      if ((options.tls.cert == null) !== (options.tls.key == null)) {
        throw new TypeError('tls: cert and key go together (mutual TLS needs both)');
      }
      creds = grpc.credentials.createSsl(read(options.tls.ca), read(options.tls.key), read(options.tls.cert));
    }
    const Service = loadService();
    this.stub = new Service(target, creds, {
      'grpc.max_receive_message_length': 64 << 20, 'grpc.max_send_message_length': 64 << 20,
      'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 2000,
    });
    this.metadata = () => {
      const md = new grpc.Metadata();
      if (options.token) md.set('authorization', `Bearer ${options.token}`);
      return md;
    };
    this.queues = new Map();
  }

  queue(name) {
    if (!this.queues.has(name)) this.queues.set(name, new Queue(this, name));
    return this.queues.get(name);
  }

  call(method, request, timeoutSeconds) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + 1000 * (timeoutSeconds ?? this.timeout));
      this.stub[method](request, this.metadata(), { deadline }, (err, reply) => {
        if (err) reject(fromGrpc(err)); else resolve(reply);
      });
    });
  }

  async callRetrying(method, request) {
    const giveUp = Date.now() + 1000 * this.retryFor;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.call(method, request);
      } catch (e) {
        if (e.code !== 'UNAVAILABLE' || Date.now() >= giveUp) throw e;
        await sleep(jitter(attempt, 50, 2000));
      }
    }
  }

  async listQueues(prefix = '') {
    const out = [];
    let pageToken = '';
    do {
      const r = await this.call('ListQueues', { prefix, pageSize: 1000, pageToken });
      out.push(...r.queues.map(queueInfo));
      pageToken = r.nextPageToken;
    } while (pageToken);
    return out;
  }

  // Waits for pending sends, ends the streams, closes the channel.
  async close() {
    for (const q of this.queues.values()) await q.closePublisher();
    this.stub.close();
  }
}

// ---- Publish: sends batched on one stream per queue ----

const LINGER_MS = 1;
const MAX_BATCH = 1000;
const MAX_IN_FLIGHT = 32;

class Publisher {
  constructor(client, queueName) {
    this.client = client;
    this.queueName = queueName;
    this.pending = []; // [entry, resolve, reject] not yet written
    this.inFlight = []; // {request, waiters} written, unanswered, in order
    this.sequence = 0;
    this.stream = null;
    this.timer = null;
    this.failingSince = null;
    this.attempt = 0;
    this.requestsSent = 0;
    this.idle = [];
  }

  submit(e) {
    return new Promise((resolve, reject) => {
      this.pending.push([e, resolve, reject]);
      if (this.pending.length >= MAX_BATCH) this.writeBatch();
      else if (this.timer === null) this.timer = setTimeout(() => this.writeBatch(), LINGER_MS);
    });
  }

  writeBatch() {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    while (this.pending.length > 0 && this.inFlight.length < MAX_IN_FLIGHT) {
      const batch = this.pending.splice(0, MAX_BATCH);
      this.sequence += 1;
      const request = { queue: this.queueName, sequence: String(this.sequence), messages: batch.map((b) => b[0]) };
      this.inFlight.push({ request, waiters: batch.map((b) => [b[1], b[2]]) });
      if (this.stream === null) this.open(); else this.write(request);
    }
  }

  write(request) {
    this.requestsSent += 1;
    this.stream.write(request);
  }

  open() {
    const stream = this.client.stub.Publish(this.client.metadata());
    this.stream = stream;
    for (const f of this.inFlight) this.write(f.request);
    stream.on('data', (r) => {
      const f = this.inFlight.shift();
      this.failingSince = null;
      this.attempt = 0;
      if (!f || r.sequence !== f.request.sequence) {
        const e = new SpoolError(`Publish answered sequence ${r.sequence}, expected ${f && f.request.sequence}`);
        if (f) f.waiters.forEach(([, reject]) => reject(e));
        stream.cancel();
        return;
      }
      if (r.code) {
        const e = errorFor(r.code, r.error);
        f.waiters.forEach(([, reject]) => reject(e));
      } else {
        f.waiters.forEach(([resolve], i) => resolve(r.results[i].messageId));
      }
      if (this.pending.length) this.writeBatch();
      this.checkIdle();
    });
    stream.on('error', (e) => this.ended(stream, fromGrpc(e)));
    stream.on('end', () => this.ended(stream, null));
  }

  ended(stream, failure) {
    if (this.stream !== stream) return;
    this.stream = null;
    if (this.inFlight.length === 0) { this.checkIdle(); return; }
    const now = Date.now();
    if (this.failingSince === null) this.failingSince = now;
    if (failure && failure.code === 'UNAVAILABLE' && now - this.failingSince < 1000 * this.client.retryFor) {
      const delay = jitter(this.attempt++, 50, 1000);
      setTimeout(() => { if (this.stream === null && this.inFlight.length) this.open(); }, delay);
      return;
    }
    const e = failure || new ERROR_CLASSES.UNAVAILABLE('Publish stream ended without answers');
    for (const f of this.inFlight.splice(0)) f.waiters.forEach(([, reject]) => reject(e));
    this.failingSince = null;
    this.checkIdle();
    if (this.pending.length) this.writeBatch();
  }

  checkIdle() {
    if (this.pending.length === 0 && this.inFlight.length === 0) {
      for (const resolve of this.idle.splice(0)) resolve();
    }
  }

  flush() {
    if (this.pending.length === 0 && this.inFlight.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  async close() {
    await this.flush();
    if (this.stream !== null) {
      const s = this.stream;
      this.stream = null;
      await new Promise((resolve) => { s.on('close', resolve); s.on('status', resolve); s.end(); });
    }
  }
}

// ---- a queue ----

class Queue {
  constructor(client, name) {
    this.client = client;
    this.name = name;
    this.publisher = null;
  }

  // Settings: visibilityTimeout, delay, retention, dedupWindow (seconds), maxDeliveries,
  // deadLetterQueue, maxPayloadBytes, maxDepth; existOk returns an existing queue as it is.
  async create(options = {}) {
    try {
      return queueInfo(await this.client.call('CreateQueue', { name: this.name, config: queueConfig(options) }));
    } catch (e) {
      if (e.code === 'ALREADY_EXISTS' && options.existOk) return this.info();
      throw e;
    }
  }
  async info() { return queueInfo(await this.client.call('GetQueue', { name: this.name })); }
  async delete() { await this.client.call('DeleteQueue', { name: this.name }); }
  async purge() { return Number((await this.client.call('PurgeQueue', { name: this.name })).purged); }

  // One message, durable when the promise resolves with its id. Sends made within 1 ms share
  // one Publish request (up to 1000); a dedup id is made up when none is given, so a send
  // retried after UNAVAILABLE never enqueues twice.
  send(payload, options = {}) {
    let e;
    try { e = entry(payload, options); } catch (err) { return Promise.reject(err); }
    if (this.publisher === null) this.publisher = new Publisher(this.client, this.name);
    return this.publisher.submit(e);
  }
  // Many messages in Enqueue calls of up to 1000 (each atomic); resolves with their ids.
  async sendBatch(payloads, options = {}) {
    const out = [];
    for (let i = 0; i < payloads.length; i += 1000) {
      const messages = payloads.slice(i, i + 1000).map((p) => entry(p, { ...options, dedupId: undefined }));
      const r = await this.client.callRetrying('Enqueue', { queue: this.name, messages });
      out.push(...r.results.map((x) => x.messageId));
    }
    return out;
  }
  flush() { return this.publisher ? this.publisher.flush() : Promise.resolve(); }
  async closePublisher() {
    if (this.publisher) { const p = this.publisher; this.publisher = null; await p.close(); }
  }
  get publishRequestsSent() { return this.publisher ? this.publisher.requestsSent : 0; }

  async lease({ max = 1, wait = 0, visibilityTimeout } = {}) {
    const request = { queue: this.name, maxMessages: max, waitTime: duration(wait) };
    if (visibilityTimeout !== undefined) request.visibilityTimeout = duration(visibilityTimeout);
    const r = await this.client.call('Lease', request, this.client.timeout + wait);
    return r.messages.map((m) => new Message(this.name, m));
  }
  async ack(...messages) {
    const r = await this.client.call('Ack', { queue: this.name, receipts: messages.map((m) => m.receipt ?? m) });
    return r.results.map((x) => x.outcome.replace('OUTCOME_', ''));
  }
  async nack(messages, { delay = 0 } = {}) {
    const list = Array.isArray(messages) ? messages : [messages];
    const r = await this.client.call('Nack', { queue: this.name, receipts: list.map((m) => m.receipt ?? m), delay: duration(delay) });
    return r.results.map((x) => x.outcome.replace('OUTCOME_', ''));
  }

  // A worker running handler (an async function of a Job) on every message; started at once.
  worker(handler, options = {}) {
    return new Worker(this, handler, options).start();
  }
}

// ---- workers ----

const COUNTERS = ['received', 'succeeded', 'failed', 'retried', 'timedOut', 'acked', 'nacked',
  'ackLost', 'dropped', 'reconnects'];

// One Subscribe stream (credit maxOutstanding), up to concurrency handler calls at once; ack on
// resolve, nack with backoff on a throw, Retry(after) nacks with that delay, a job past
// timeout is nacked and its result ignored. Reconnects with backoff; close() lets running
// jobs finish (up to shutdownTimeout) and ends the stream, releasing what it still holds.
class Worker {
  constructor(queue, handler, options = {}) {
    this.queue = queue;
    this.client = queue.client;
    this.handler = handler;
    this.concurrency = options.concurrency ?? 1;
    this.maxOutstanding = options.maxOutstanding ?? 2 * this.concurrency;
    if (this.maxOutstanding < this.concurrency) throw new RangeError('maxOutstanding: at least concurrency');
    this.visibilityTimeout = options.visibilityTimeout;
    this.maxLeaseDuration = options.maxLeaseDuration;
    this.retryBackoff = options.retryBackoff ?? [1, 300];
    this.timeout = options.timeout;
    this.shutdownTimeout = options.shutdownTimeout ?? 30;
    this.onError = options.onError ?? ((job, e) => console.warn(`spool worker of ${queue.name}: ${job ? `job ${job.id}: ` : ''}${e.message}`));
    this.counters = Object.fromEntries(COUNTERS.map((c) => [c, 0]));
    this.ready = [];
    this.running = new Set();
    this.generation = 0;
    this.stream = null;
    this.stopping = false;
    this.error = null;
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve; });
    this.attempt = 0;
  }

  stats() { return { ...this.counters }; }

  start() { this.connect(); return this; }

  connect() {
    if (this.stopping) { this.finish(); return; }
    this.generation += 1;
    const generation = this.generation;
    const stream = this.client.stub.Subscribe(this.client.metadata());
    this.stream = stream;
    const first = { queue: this.queue.name, maxOutstanding: this.maxOutstanding };
    if (this.visibilityTimeout !== undefined) first.visibilityTimeout = duration(this.visibilityTimeout);
    if (this.maxLeaseDuration !== undefined) first.maxLeaseDuration = duration(this.maxLeaseDuration);
    stream.write(first);
    stream.on('data', (r) => {
      this.attempt = 0;
      for (const x of r.ackResults) {
        if (x.outcome === 'OUTCOME_OK') this.counters.acked += 1; else this.counters.ackLost += 1;
      }
      for (const x of r.nackResults) if (x.outcome === 'OUTCOME_OK') this.counters.nacked += 1;
      for (const m of r.messages) {
        this.counters.received += 1;
        const job = new Message(this.queue.name, m);
        job.generation = generation;
        this.ready.push(job);
      }
      this.pump();
    });
    let done = false;
    const ended = (failure) => {
      if (done) return;
      done = true;
      if (this.stream === stream) this.stream = null;
      this.counters.dropped += this.ready.length; // they come back from spoold
      this.ready = [];
      if (this.stopping) { this.finish(); return; }
      if (failure && FATAL.has(failure.code)) {
        this.error = failure;
        this.report(null, failure);
        this.stopping = true;
        this.finish();
        return;
      }
      this.report(null, failure || new ERROR_CLASSES.UNAVAILABLE('Subscribe stream ended'));
      this.counters.reconnects += 1;
      setTimeout(() => this.connect(), jitter(this.attempt++, 100, 5000));
    };
    stream.on('error', (e) => ended(fromGrpc(e)));
    stream.on('end', () => ended(null));
  }

  pump() {
    while (!this.stopping && this.running.size < this.concurrency && this.ready.length > 0) {
      const job = this.ready.shift();
      this.run(job);
    }
  }

  backoff(job) {
    const [low, high] = this.retryBackoff;
    return Math.min(high, low * 2 ** Math.max(0, job.deliveryCount - 1));
  }

  async run(job) {
    this.running.add(job);
    let timer = null;
    const timedOut = this.timeout === undefined ? null : new Promise((resolve) => {
      timer = setTimeout(() => resolve('timeout'), 1000 * this.timeout);
    });
    try {
      const work = Promise.resolve().then(() => this.handler(job));
      const outcome = timedOut ? await Promise.race([work, timedOut]) : await work;
      if (outcome === 'timeout' && timedOut) {
        work.catch(() => {}); // its result is ignored
        if (this.settle(job, false, 'timedOut', this.backoff(job))) {
          this.report(job, new SpoolError(`job ${job.id} ran longer than ${this.timeout} s; nacked`, 'DEADLINE_EXCEEDED'));
        }
      } else {
        this.settle(job, true, 'succeeded');
      }
    } catch (e) {
      if (e instanceof Retry) this.settle(job, false, 'retried', e.after);
      else if (this.settle(job, false, 'failed', this.backoff(job))) this.report(job, e);
    } finally {
      if (timer) clearTimeout(timer);
      this.pump();
    }
  }

  settle(job, ok, counter, delay = 0) {
    if (job.settled) return false;
    job.settled = true;
    this.running.delete(job);
    this.counters[counter] += 1;
    if (this.stream !== null && job.generation === this.generation) {
      this.stream.write(ok ? { ack: [job.receipt] } : { nack: [job.receipt], nackDelay: duration(delay) });
    } else { // its stream has ended: a plain call
      const settled = ok ? this.queue.ack(job) : this.queue.nack(job, { delay });
      settled.then(([outcome]) => {
        if (outcome === 'OK') this.counters[ok ? 'acked' : 'nacked'] += 1;
        else if (ok) this.counters.ackLost += 1;
      }, (e) => { if (ok) this.counters.ackLost += 1; this.report(job, e); });
    }
    this.pump();
    return true;
  }

  report(job, e) {
    try { this.onError(job, e); } catch (_) { /* a failing hook must not stop the worker */ }
  }

  finish() {
    this.stopping = true;
    this.resolveClosed();
  }

  // Graceful stop; resolves once the stream has ended. Rejects with the error that stopped
  // the worker by itself, if one did.
  async close(timeoutSeconds = this.shutdownTimeout) {
    this.stopping = true;
    const giveUp = Date.now() + 1000 * timeoutSeconds;
    while (this.running.size > 0 && Date.now() < giveUp) await sleep(20);
    for (const job of this.running) job.settled = true; // released with the stream
    this.running.clear();
    const s = this.stream;
    if (s !== null) {
      s.end();
      const t = setTimeout(() => s.cancel(), 5000);
      await this.closed;
      clearTimeout(t);
    } else {
      this.finish();
    }
  }

  // Resolves when the worker stops (close(), or a fatal error: then it rejects with it).
  async done() {
    await this.closed;
    if (this.error) throw this.error;
  }
}

module.exports = {
  Client, Queue, Worker, Message, Retry, SpoolError,
  NotFound: ERROR_CLASSES.NOT_FOUND, InvalidArgument: ERROR_CLASSES.INVALID_ARGUMENT,
  AlreadyExists: ERROR_CLASSES.ALREADY_EXISTS, PermissionDenied: ERROR_CLASSES.PERMISSION_DENIED,
  Unauthenticated: ERROR_CLASSES.UNAUTHENTICATED, ResourceExhausted: ERROR_CLASSES.RESOURCE_EXHAUSTED,
  FailedPrecondition: ERROR_CLASSES.FAILED_PRECONDITION, Unavailable: ERROR_CLASSES.UNAVAILABLE,
  DeadlineExceeded: ERROR_CLASSES.DEADLINE_EXCEEDED, Cancelled: ERROR_CLASSES.CANCELLED,
};
