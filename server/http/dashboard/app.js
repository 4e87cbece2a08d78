// spoold's dashboard: polls the JSON admin API (/api/v1/...) and renders an overview of every
// queue and a page per queue. Plain ES2020, no framework and no build step, because the three
// files are embedded in spoold as they are.
//
// Two rules hold throughout:
//  - Nothing from the server becomes markup unescaped: HTML is built only with the `html`
//    tagged template below, which escapes every interpolated value.
//  - Polls never overlap: the next one is scheduled when the previous one has finished, so a
//    slow server gets fewer requests, not a pile of them.
'use strict';

const POLL_MS = 2000;
const HISTORY_MS = 15 * 60 * 1000;   // how far back the charts go
const PEEK_LIMIT = 20;
// Rates are taken over the last few polls (about 6 s), not just the last one: producers are
// bursty, and a 2 s window turns every burst into a spike.
const RATE_SAMPLES = 3;
const REQUEST_TIMEOUT_MS = 10000;
const TOKEN_KEY = 'spool.token';        // sessionStorage: a token should not outlive the tab
const THRESHOLD_KEY = 'spool.ageThreshold';
const SORT_KEY = 'spool.sort';

// ---------------------------------------------------------------------------------------------
// Escaping and small DOM helpers

const $ = (sel) => document.querySelector(sel);
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);

// Markup that is already safe. Only `html` and `raw` make one.
class Safe { constructor(s) { this.s = s; } toString() { return this.s; } }
const raw = (s) => new Safe(s);

// html`<td>${x}</td>`: every value is escaped unless it is itself the result of html``; arrays
// are joined, null and undefined print nothing.
function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => { out += part(v) + strings[i + 1]; });
  return new Safe(out);
}
function part(v) {
  if (v == null || v === false) return '';
  if (v instanceof Safe) return v.s;
  if (Array.isArray(v)) return v.map(part).join('');
  return esc(v);
}

const queueHref = (name) => '#/queue/' + encodeURIComponent(name);

function store(kind, key, value) {
  // Storage can be unavailable (privacy modes); the page then just forgets.
  try {
    const s = kind === 'session' ? sessionStorage : localStorage;
    if (value === undefined) return s.getItem(key);
    if (value === null) s.removeItem(key); else s.setItem(key, value);
  } catch (e) { /* ignore */ }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Parsing the proto JSON: uint64 arrive as strings, durations as "12.500s", and fields that are
// unset may be missing; missing counts as 0.

const num = (v) => { const n = Number(v); return Number.isFinite(n) ? n : 0; };
const seconds = (v) => (typeof v === 'string' && v.endsWith('s')) ? num(v.slice(0, -1)) : num(v);
// The API says "ready"; the gRPC enum would be MESSAGE_STATE_READY. Accept both.
const stateName = (s) => String(s || '').replace(/^MESSAGE_STATE_/, '').toLowerCase();

// ---------------------------------------------------------------------------------------------
// Formatting for people

// 999, 1.2k, 12.3k, 123k, 4.5M ...
function fmtCount(n) {
  if (n == null || !Number.isFinite(n)) return '—';
  const a = Math.abs(n);
  if (a < 1000) return String(Math.round(n));
  const units = ['k', 'M', 'G', 'T', 'P', 'E'];
  let v = a, i = -1;
  while (v >= 999.5 && i < units.length - 1) { v /= 1000; i++; }
  const s = v < 99.95 ? v.toFixed(1).replace(/\.0$/, '') : String(Math.round(v));
  return (n < 0 ? '-' : '') + s + units[i];
}

// One formatter for all: toLocaleString() builds a new one per call, which at 1,000 rows of
// several numbers each was most of a render.
const EXACT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const fmtExact = (n) => EXACT.format(n);

function fmtRate(r) {
  if (r == null || !Number.isFinite(r)) return '—';
  if (r === 0) return '0/s';
  if (r < 0.1) return '<0.1/s';
  return (r < 100 ? r.toFixed(1) : fmtCount(r)) + '/s';
}

// Two most significant units: "45 s", "3 min 20 s", "2 h 5 min", "3 d 4 h". Ages are read at a
// glance; a third unit would be noise.
function fmtAge(sec) {
  if (!(sec > 0)) return '0 s';
  if (sec < 1) return Math.round(sec * 1000) + ' ms';
  if (sec < 10) return (Math.round(sec * 10) / 10) + ' s';
  const parts = splitUnits(Math.round(sec));
  return parts.slice(0, 2).filter((p, i) => i === 0 || !p.startsWith('0 ')).join(' ');
}

// Every unit, for settings where "1 min" instead of "1 min 30 s" would be wrong.
function fmtDurationExact(sec) {
  if (sec === 0) return '0 s';
  if (sec < 1) return Math.round(sec * 1000) + ' ms';
  const whole = Math.floor(sec), ms = Math.round((sec - whole) * 1000);
  const parts = splitUnits(whole).filter((p) => !p.startsWith('0 '));
  if (ms) parts.push(ms + ' ms');
  return parts.join(' ');
}

function splitUnits(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  const parts = [];
  if (d) parts.push(d + ' d');
  if (d || h) parts.push(h + ' h');
  if (d || h || m) parts.push(m + ' min');
  parts.push((s % 60) + ' s');
  return parts;
}

function fmtBytes(b) {
  if (b < 1024) return b + ' B';
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = b, i = -1;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (Number.isInteger(v) ? v : v.toFixed(1)) + ' ' + units[i];
}

// "3 min ago" / "in 25 s" from an RFC 3339 time.
function fmtWhen(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const d = (t - Date.now()) / 1000;
  if (Math.abs(d) < 1) return 'now';
  return d > 0 ? 'in ' + fmtAge(d) : fmtAge(-d) + ' ago';
}

// 24-hour clock times: what logs and operators use, whatever the browser's locale.
// 2026-12-02 07:04:58, local time: sortable and unambiguous.
function fmtDate(t) {
  const d = new Date(t), p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const fmtClock = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message, field) { super(message); this.status = status; this.field = field; }
  toString() { return (this.status ? this.status + ': ' : '') + this.message + (this.field ? ' (field: ' + this.field + ')' : ''); }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const token = store('session', TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  // A hung request must not stall the poll loop for ever.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  let res, text;
  try {
    res = await fetch(path, {
      method, headers, cache: 'no-store', signal: abort.signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    text = await res.text();
  } catch (e) {
    throw new ApiError(0, abort.signal.aborted ? 'spoold did not answer within 10 s' : 'cannot reach spoold');
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON: reported below */ }
  if (!res.ok) {
    throw new ApiError(res.status, (data && data.error) || text.trim() || res.statusText, data && data.field);
  }
  if (data === null) throw new ApiError(res.status, 'the reply is not JSON');
  return data;
}

const apiQueue = (name) => '/api/v1/queues/' + encodeURIComponent(name);

// ---------------------------------------------------------------------------------------------
// State

const state = {
  queues: [],            // rows of the last poll, see ingest()
  visible: [],           // the overview's rows after filter and sort
  byName: new Map(),
  totals: null,          // {ready, leased, delayed, total, enqueue_rate, ...}
  lastOk: 0,             // Date.now() of the last good poll
  baselines: [],         // last RATE_SAMPLES [{t, counters: Map name -> [enq, del, ack]}]
  rates: new Map(),      // name -> {enq, del, ack} per second
  history: [],           // [{t, ready, leased, delayed, enq, del, ack}] totals for the charts
  qHistory: { name: null, samples: [] },  // the open queue's own samples
  sort: { col: 'name', dir: 1 },
  filter: '',
  threshold: 60,
  route: { view: 'overview', name: null },
  peek: { state: '', seq: 0, expanded: new Set(), messages: [] },
  authNeeded: false,
};

// One poll's list of queues -> flat rows, with rates against a baseline a few polls back.
function ingest(data) {
  const now = Date.now();
  const list = Array.isArray(data.queues) ? data.queues : [];
  const counters = new Map();
  const bases = state.baselines;
  const newest = bases[bases.length - 1];
  // A poll forced right after an action comes less than a second after the last one: it
  // updates depths but keeps the rates and baselines it has.
  const fresh = !newest || now - newest.t >= 1000;
  const rows = list.map((q) => {
    const s = q.stats || {}, c = q.config || {};
    const row = {
      name: String(q.name),
      ready: num(s.ready), leased: num(s.leased), delayed: num(s.delayed), total: num(s.total),
      oldest: seconds(s.oldest_ready_age),
      dlq: String(c.dead_letter_queue || ''),
      raw: q,
    };
    const cur = [num(s.enqueued_total), num(s.delivered_total), num(s.acked_total)];
    counters.set(row.name, cur);
    if (fresh) {
      // The oldest baseline that knows this queue (a new queue has none yet).
      const base = bases.find((b) => b.counters.has(row.name));
      const before = base && base.counters.get(row.name), dt = base && (now - base.t) / 1000;
      // A counter that went down means the queue was deleted and created again: no rate.
      state.rates.set(row.name, before && cur.every((v, i) => v >= before[i])
        ? { enq: (cur[0] - before[0]) / dt, del: (cur[1] - before[1]) / dt, ack: (cur[2] - before[2]) / dt }
        : null);
    }
    const r = state.rates.get(row.name);
    row.enqueue_rate = r ? r.enq : null;
    row.deliver_rate = r ? r.del : null;
    row.ack_rate = r ? r.ack : null;
    return row;
  });
  state.queues = rows;
  state.byName = new Map(rows.map((r) => [r.name, r]));

  const t = data.totals || {};
  const sum = (k) => rows.reduce((a, r) => a + (r[k] || 0), 0);
  const haveRates = rows.some((r) => r.enqueue_rate != null);
  state.totals = {
    queues: rows.length,
    ready: t.ready != null ? num(t.ready) : sum('ready'),
    leased: t.leased != null ? num(t.leased) : sum('leased'),
    delayed: t.delayed != null ? num(t.delayed) : sum('delayed'),
    total: t.total != null ? num(t.total) : sum('total'),
    enqueue_rate: haveRates ? sum('enqueue_rate') : null,
    deliver_rate: haveRates ? sum('deliver_rate') : null,
    ack_rate: haveRates ? sum('ack_rate') : null,
  };
  if (fresh) {
    bases.push({ t: now, counters });
    if (bases.length > RATE_SAMPLES) bases.shift();
    const T = state.totals;
    pushSample(state.history, { t: now, ready: T.ready, leased: T.leased, delayed: T.delayed,
      enq: T.enqueue_rate, del: T.deliver_rate, ack: T.ack_rate });
    const open = state.route.view === 'queue' && state.byName.get(state.route.name);
    if (open) {
      if (state.qHistory.name !== open.name) state.qHistory = { name: open.name, samples: [] };
      pushSample(state.qHistory.samples, { t: now, enq: open.enqueue_rate, del: open.deliver_rate, ack: open.ack_rate });
    }
  }
  state.lastOk = now;
}

function pushSample(arr, s) {
  arr.push(s);
  while (arr.length && arr[0].t < s.t - HISTORY_MS) arr.shift();
}

// ---------------------------------------------------------------------------------------------
// Polling

let pollTimer = null, polling = false, pollAgain = false;

function schedulePoll(ms) { clearTimeout(pollTimer); pollTimer = setTimeout(poll, ms); }
// After an action: poll at once, or right after the poll in flight.
function pollNow() { if (polling) pollAgain = true; else schedulePoll(0); }

async function poll() {
  polling = true;
  try {
    ingest(await api('GET', '/api/v1/queues'));
    hideAuth();
    setConn('ok');
    render();
    if (state.route.view === 'queue' && $('#peek-live').checked) await loadPeek();
  } catch (e) {
    if (e.status === 401) {
      showAuth(e);   // polling resumes when a token is submitted
    } else {
      setConn('error', e);
      pushSample(state.history, { t: Date.now() });   // no values: the charts show a gap
    }
  } finally {
    polling = false;
    if (!state.authNeeded) schedulePoll(pollAgain ? 0 : POLL_MS);
    pollAgain = false;
  }
}

function setConn(kind, err) {
  const el = $('#conn');
  el.dataset.state = kind;
  const last = state.lastOk ? 'updated ' + fmtClock(state.lastOk) : 'no data yet';
  $('#conn-text').textContent = kind === 'ok' ? last : (err ? String(err) : 'error') + ' · ' + last;
  el.title = kind === 'ok' ? 'Polling /api/v1/queues every 2 s' : 'Retrying every 2 s';
  if (kind === 'error' && err && err.status === 403) status(String(err), 'err');
}

// ---------------------------------------------------------------------------------------------
// Status line: results and errors of actions, visible until the next one (successes fade).

let statusTimer = null;
function status(text, kind) {
  const el = $('#status');
  el.textContent = text;
  el.className = 'status ' + (kind || '');
  el.hidden = false;
  clearTimeout(statusTimer);
  if (kind !== 'err') statusTimer = setTimeout(() => { el.hidden = true; }, 8000);
}

// ---------------------------------------------------------------------------------------------
// Auth

function showAuth(err) {
  state.authNeeded = true;
  const had = !!store('session', TOKEN_KEY);
  const msg = $('#token-error');
  msg.hidden = !had;
  msg.textContent = had ? 'spoold refused that token (' + err.message + ').' : '';
  setConn('error', err);
  showView('auth');
  $('#token-input').focus();
}

function hideAuth() {
  if (!state.authNeeded) return;
  state.authNeeded = false;
  route();
}

function updateForgetLink() { $('#forget-token').hidden = !store('session', TOKEN_KEY); }

// ---------------------------------------------------------------------------------------------
// Routing: #/ is the overview, #/queue/<urlencoded name> one queue.

function route() {
  const m = /^#\/queue\/(.+)$/.exec(location.hash);
  let name = null;
  if (m) { try { name = decodeURIComponent(m[1]); } catch (e) { name = null; } }
  state.route = name != null ? { view: 'queue', name } : { view: 'overview', name: null };
  if (state.authNeeded) return;
  if (name != null) {
    if (state.qHistory.name !== name) state.qHistory = { name, samples: [] };
    if (state.peek.name !== name) state.peek = { name, state: '', seq: state.peek.seq + 1, expanded: new Set(), messages: [] };
    showView('queue');
    render();
    loadPeek();
  } else {
    showView('overview');
    render();
  }
  window.scrollTo(0, 0);
}

function showView(v) {
  for (const id of ['overview', 'queue', 'auth']) $('#view-' + id).hidden = id !== v;
  const crumbs = $('#crumbs');
  crumbs.innerHTML = String(v === 'queue'
    ? html`<a href="#/">Queues</a><span class="sep">/</span><span class="cur">${state.route.name}</span>`
    : html`<a href="#/" class="cur">Queues</a>`);
  document.title = v === 'queue' ? state.route.name + ' · Spool' : 'Spool';
}

function render() {
  if (state.authNeeded) return;
  if (state.route.view === 'queue') renderQueue(); else renderOverview();
}

// ---------------------------------------------------------------------------------------------
// Overview

const COLS = ['name', 'ready', 'leased', 'delayed', 'total', 'oldest', 'enqueue_rate', 'deliver_rate', 'ack_rate', 'dlq'];
const TEXT_COLS = new Set(['name', 'dlq']);

function ageClass(row) {
  if (!row.ready || !row.oldest) return '';
  if (row.oldest >= state.threshold * 5) return 'crit';
  return row.oldest >= state.threshold ? 'warn' : '';
}

function summaryHtml(items) {
  return html`${items.map(([label, value, title, cls]) =>
    html`<div class="stat ${cls || ''}" title="${title || ''}"><div class="v">${value}</div><div class="k">${label}</div></div>`)}`;
}

function renderTotals() {
  const T = state.totals;
  if (!T) return;
  $('#totals').innerHTML = String(summaryHtml([
    ['queues', fmtExact(T.queues), fmtExact(T.queues)],
    ['ready', fmtCount(T.ready), fmtExact(T.ready), 'ready'],
    ['leased', fmtCount(T.leased), fmtExact(T.leased), 'leased'],
    ['delayed', fmtCount(T.delayed), fmtExact(T.delayed), 'delayed'],
    ['total', fmtCount(T.total), fmtExact(T.total)],
    ['enqueue', fmtRate(T.enqueue_rate), 'messages enqueued per second', 'r-enq'],
    ['deliver', fmtRate(T.deliver_rate), 'messages delivered (leased) per second', 'r-del'],
    ['ack', fmtRate(T.ack_rate), 'messages acked per second', 'r-ack'],
  ]));
}

function visibleRows() {
  const f = state.filter.toLowerCase();
  const rows = f ? state.queues.filter((r) => r.name.toLowerCase().includes(f)) : state.queues.slice();
  const { col, dir } = state.sort;
  const text = TEXT_COLS.has(col);
  rows.sort((a, b) => {
    let d;
    if (text) d = a[col].localeCompare(b[col]);
    else d = (a[col] == null ? -1 : a[col]) - (b[col] == null ? -1 : b[col]);
    return d * dir || a.name.localeCompare(b.name);
  });
  return rows;
}

function numCell(col, v, shown, cls) {
  return html`<td data-col="${col}" data-value="${v == null ? '' : v}" class="${cls || ''}" title="${v == null ? '' : fmtExact(v)}">${shown}</td>`;
}

// i: the row's index among all rows shown, for the zebra stripes (nth-child would count the
// spacer row and flicker while scrolling).
function rowHtml(r, i) {
  const age = r.ready ? fmtAge(r.oldest) : '—';
  return String(html`<tr data-testid="queue-row" data-queue="${r.name}" class="${i % 2 ? 'odd' : ''}">` +
    html`<td data-col="name" class="left name"><a href="${queueHref(r.name)}">${r.name}</a></td>` +
    numCell('ready', r.ready, fmtCount(r.ready), r.ready ? '' : 'zero') +
    numCell('leased', r.leased, fmtCount(r.leased), r.leased ? '' : 'zero') +
    numCell('delayed', r.delayed, fmtCount(r.delayed), r.delayed ? '' : 'zero') +
    numCell('total', r.total, fmtCount(r.total), r.total ? 'strong' : 'zero') +
    html`<td data-col="oldest" data-value="${r.oldest}" class="age ${ageClass(r)}">${age}</td>` +
    html`<td data-col="enqueue_rate" data-value="${r.enqueue_rate ?? ''}" class="${r.enqueue_rate ? '' : 'zero'}">${fmtRate(r.enqueue_rate)}</td>` +
    html`<td data-col="deliver_rate" data-value="${r.deliver_rate ?? ''}" class="${r.deliver_rate ? '' : 'zero'}">${fmtRate(r.deliver_rate)}</td>` +
    html`<td data-col="ack_rate" data-value="${r.ack_rate ?? ''}" class="${r.ack_rate ? '' : 'zero'}">${fmtRate(r.ack_rate)}</td>` +
    html`<td data-col="dlq" class="left">${r.dlq ? html`<a href="${queueHref(r.dlq)}">${r.dlq}</a>` : ''}</td></tr>`);
}

// Only the rows near the viewport are in the DOM, between two spacer rows that keep the scroll
// height: with 1,000 queues a full table costs ~100 ms of layout per poll, a window of ~80
// rows a few. (The filter box, not the browser's find, is how to look for a queue.)
const WINDOW_SLACK = 30;   // rows kept beyond each edge of the viewport
let rowHeight = 0;         // measured from the first rendered row
let lastWindow = '';

function renderTable() {
  state.visible = visibleRows();
  lastWindow = '';
  renderWindow();
  renderTableFoot(state.visible);
}

function renderWindow() {
  const rows = state.visible || [];
  const tbody = $('#queue-table tbody');
  if (!rowHeight && rows.length) {
    // Measure one row once (0 while the table is hidden: try again next time).
    tbody.innerHTML = rowHtml(rows[0], 0);
    rowHeight = tbody.rows[0].getBoundingClientRect().height;
  }
  let first = 0, last = Math.min(rows.length, 100);
  if (rowHeight) {
    const top = tbody.getBoundingClientRect().top;   // relative to the viewport
    const from = Math.floor(-top / rowHeight), to = Math.ceil((innerHeight - top) / rowHeight);
    // Edges on multiples of 10 rows, so small scrolls do not rebuild anything.
    first = Math.min(rows.length, Math.max(0, Math.floor((from - WINDOW_SLACK) / 10) * 10));
    last = Math.max(first, Math.min(rows.length, Math.ceil((to + WINDOW_SLACK) / 10) * 10));
  }
  const body = rows.slice(first, last).map((r, i) => rowHtml(r, first + i)).join('');
  const key = first + ':' + last + ':' + body;
  if (key === lastWindow) return;
  lastWindow = key;
  tbody.innerHTML = '<tr class="pad"></tr>' + body + '<tr class="pad"></tr>';
  // Heights through the CSSOM, so a strict Content-Security-Policy needs no inline styles.
  tbody.rows[0].style.height = first * rowHeight + 'px';
  tbody.rows[tbody.rows.length - 1].style.height = (rows.length - last) * rowHeight + 'px';
}

function renderTableFoot(rows) {
  // Totals of the rows shown, so a filter answers "how much is in these queues".
  const sum = (k) => rows.reduce((a, r) => a + (r[k] || 0), 0);
  const sumRate = (k) => (rows.some((r) => r[k] != null) ? sum(k) : null);
  const n = rows.length;
  $('#queue-table tfoot').innerHTML = n ? String(html`<tr>
    <td class="left">${state.filter ? `Σ ${n} shown` : `Σ ${n} queues`}</td>
    <td title="${fmtExact(sum('ready'))}">${fmtCount(sum('ready'))}</td>
    <td title="${fmtExact(sum('leased'))}">${fmtCount(sum('leased'))}</td>
    <td title="${fmtExact(sum('delayed'))}">${fmtCount(sum('delayed'))}</td>
    <td title="${fmtExact(sum('total'))}">${fmtCount(sum('total'))}</td>
    <td title="oldest ready message of these queues">${fmtAge(rows.reduce((a, r) => Math.max(a, r.ready ? r.oldest : 0), 0))}</td>
    <td>${fmtRate(sumRate('enqueue_rate'))}</td><td>${fmtRate(sumRate('deliver_rate'))}</td><td>${fmtRate(sumRate('ack_rate'))}</td>
    <td></td></tr>`) : '';

  const empty = $('#queues-empty');
  empty.hidden = n > 0;
  empty.textContent = state.queues.length ? 'No queue name contains “' + state.filter + '”.'
    : 'No queues yet. Create one with: spoolctl create NAME';
  $('#shown-count').textContent = state.filter ? n + ' of ' + state.queues.length + ' queues' : '';
  for (const th of $('#queue-table thead').querySelectorAll('th')) {
    const on = th.dataset.sort === state.sort.col;
    th.setAttribute('aria-sort', on ? (state.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
  }
}

let charts = null;
function renderOverview() {
  renderTotals();
  renderTable();
  charts.depth.update(state.history);
  charts.rates.update(state.history);
}

// ---------------------------------------------------------------------------------------------
// One queue

const CONFIG_FIELDS = [
  ['visibility_timeout', 'Visibility timeout', (v) => fmtDurationExact(seconds(v))],
  ['max_deliveries', 'Max deliveries', (v) => (num(v) ? fmtExact(num(v)) : 'unlimited')],
  ['dead_letter_queue', 'Dead-letter queue', (v) => (v ? html`<a href="${queueHref(v)}">${v}</a>` : 'none')],
  ['retention', 'Retention', (v) => (seconds(v) ? fmtDurationExact(seconds(v)) : 'until acked')],
  ['delay', 'Default delay', (v) => (seconds(v) ? fmtDurationExact(seconds(v)) : 'none')],
  ['max_payload_bytes', 'Max payload', (v) => fmtBytes(num(v))],
  ['max_depth', 'Max depth', (v) => (num(v) ? fmtExact(num(v)) + ' messages' : 'unlimited')],
  ['dedup_window', 'Dedup window', (v) => fmtDurationExact(seconds(v))],
];

const COUNTERS = [
  ['enqueued_total', 'Enqueued'], ['delivered_total', 'Delivered'], ['acked_total', 'Acked'],
  ['nacked_total', 'Nacked'], ['dead_lettered_total', 'Dead-lettered'], ['expired_total', 'Expired'],
  ['purged_total', 'Purged'], ['deleted_total', 'Deleted'], ['moved_total', 'Moved out'],
];

const dlqSources = (name) => state.queues.filter((r) => r.dlq === name).map((r) => r.name);

function renderQueue() {
  const name = state.route.name;
  $('#queue-title').textContent = name;
  const row = state.byName.get(name);
  const missing = !row && state.lastOk > 0;
  $('#queue-missing').hidden = !missing;
  $('#queue-body').hidden = missing;
  $('#purge-button').disabled = $('#redrive-button').disabled = !row;
  if (missing) {
    $('#queue-missing').textContent = 'No queue named “' + name + '”: it may have been deleted, or this token may not see it.';
    $('#queue-sub').textContent = '';
    return;
  }
  if (!row) return;  // first poll still running
  const q = row.raw, cfg = q.config || {}, st = q.stats || {};

  const sources = dlqSources(name);
  const created = Date.parse(q.create_time);
  $('#queue-sub').innerHTML = String(html`${Number.isFinite(created) ? html`created ${fmtWhen(q.create_time)}` : ''}${
    sources.length ? html` · dead-letter queue of ${sources.map((s, i) => html`${i ? ', ' : ''}<a href="${queueHref(s)}">${s}</a>`)}` : ''}`);

  $('#queue-depth').innerHTML = String(summaryHtml([
    ['ready', fmtCount(row.ready), fmtExact(row.ready), 'ready'],
    ['leased', fmtCount(row.leased), fmtExact(row.leased), 'leased'],
    ['delayed', fmtCount(row.delayed), fmtExact(row.delayed), 'delayed'],
    ['total', fmtCount(row.total), fmtExact(row.total)],
    ['oldest ready', row.ready ? fmtAge(row.oldest) : '—', 'age of the oldest ready message', 'age ' + ageClass(row)],
    ['enqueue', fmtRate(row.enqueue_rate), '', 'r-enq'],
    ['deliver', fmtRate(row.deliver_rate), '', 'r-del'],
    ['ack', fmtRate(row.ack_rate), '', 'r-ack'],
  ]));

  // Every setting, known ones in human units first, then any the page does not know yet.
  const known = new Set(CONFIG_FIELDS.map((f) => f[0]));
  const cfgRows = CONFIG_FIELDS.map(([k, label, f]) => [label, f(cfg[k] ?? ''), k + ' = ' + JSON.stringify(cfg[k] ?? null)]);
  for (const k of Object.keys(cfg)) if (!known.has(k)) cfgRows.push([k, String(cfg[k]), k]);
  if (Number.isFinite(created)) cfgRows.push(['Created', fmtDate(created), q.create_time]);
  $('#queue-config').innerHTML = String(html`${cfgRows.map(([k, v, t]) => html`<dt>${k}</dt><dd title="${t}">${v}</dd>`)}`);

  const knownC = new Set(COUNTERS.map((c) => c[0]));
  const cRows = COUNTERS.map(([k, label]) => [label, num(st[k]), k]);
  for (const k of Object.keys(st)) if (k.endsWith('_total') && !knownC.has(k)) cRows.push([k, num(st[k]), k]);
  $('#queue-counters').innerHTML = String(html`${cRows.map(([label, v, k]) =>
    html`<dt>${label}</dt><dd class="num" title="${k}: ${fmtExact(v)}">${fmtExact(v)}</dd>`)}`);

  charts.queue.update(state.qHistory.name === name ? state.qHistory.samples : []);

  for (const b of $('#peek-tabs').querySelectorAll('button')) {
    const s = b.dataset.state;
    b.setAttribute('aria-selected', String(s === state.peek.state));
    b.dataset.count = s ? fmtCount(row[s]) : fmtCount(row.total);
  }
}

// Peek: the first messages of the open queue in the chosen state. A sequence number drops
// replies that arrive after the user moved on to another tab or queue.
async function loadPeek() {
  if (state.route.view !== 'queue') return;
  const name = state.route.name, pstate = state.peek.state, seq = ++state.peek.seq;
  const qs = new URLSearchParams({ limit: String(PEEK_LIMIT) });
  if (pstate) qs.set('state', pstate);
  try {
    const data = await api('GET', apiQueue(name) + '/messages?' + qs);
    if (seq !== state.peek.seq) return;
    state.peek.messages = Array.isArray(data.messages) ? data.messages : [];
    state.peek.more = !!data.next_after;
    state.peek.error = null;
  } catch (e) {
    if (seq !== state.peek.seq) return;
    if (e.status === 401) { showAuth(e); return; }
    state.peek.messages = [];
    state.peek.error = e;
  }
  renderPeek();
}

function payloadHtml(m) {
  const text = String(m.payload ?? '');
  const bytes = num(m.payload_bytes);
  const cut = m.payload_truncated || (m.payload_encoding === 'text' && bytes > new TextEncoder().encode(text).length);
  const meta = html`<span class="pmeta">${m.payload_encoding === 'base64' ? 'binary, base64 · ' : ''}${fmtBytes(bytes)}${cut ? ' · preview' : ''}</span>`;
  // Expanded, a whole JSON payload is shown indented; anything else as it is.
  let full = text;
  if (!cut && /^\s*[[{]/.test(text)) { try { full = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ } }
  return html`<div class="payload ${m.payload_encoding === 'base64' ? 'b64' : ''}">${meta}<span class="short">${text}${cut ? '…' : ''}</span><span class="full">${full}${cut ? '…' : ''}</span></div>`;
}

function renderPeek() {
  const { messages, expanded, error } = state.peek;
  const tbody = $('#peek-table tbody');
  tbody.innerHTML = String(html`${messages.map((m) => {
    const st = stateName(m.state);
    const attrs = Object.entries(m.attributes || {});
    const visLabel = st === 'leased' ? 'lease ends ' : st === 'delayed' ? 'visible ' : 'since ';
    return html`<tr data-testid="peek-row" data-id="${m.message_id}" class="${expanded.has(m.message_id) ? 'expanded' : ''}">
      <td class="left mono id">${m.message_id}${m.dead_letter_source_queue
        ? html`<div class="src" title="dead-lettered from ${m.dead_letter_source_queue}, id ${m.dead_letter_source_id}">from <a href="${queueHref(m.dead_letter_source_queue)}">${m.dead_letter_source_queue}</a></div>` : ''}</td>
      <td class="left"><span class="pill ${st}">${st || '?'}</span></td>
      <td class="${num(m.delivery_count) > 1 ? 'strong' : ''}">${num(m.delivery_count)}</td>
      <td title="${m.enqueue_time}">${fmtWhen(m.enqueue_time)}</td>
      <td title="${m.visible_time}">${st === 'ready' ? fmtWhen(m.visible_time) : visLabel + fmtWhen(m.visible_time)}</td>
      <td class="left attrs">${attrs.map(([k, v]) => html`<span class="attr"><b>${k}</b>=${v}</span>`)}</td>
      <td class="left wide">${payloadHtml(m)}</td>
      <td><button type="button" class="btn small ghost" data-action="delete" data-id="${m.message_id}" title="Delete this message">Delete</button></td>
    </tr>`;
  })}`);
  const empty = $('#peek-empty');
  empty.hidden = messages.length > 0 && !error;
  empty.className = error ? 'empty err' : 'empty';
  empty.textContent = error ? 'Peek failed: ' + error : 'No ' + (state.peek.state ? state.peek.state + ' ' : '') + 'messages.';
  $('#peek-note').textContent = messages.length ? 'first ' + messages.length + (state.peek.more ? ', more follow' : '') : '';
}

// ---------------------------------------------------------------------------------------------
// Actions

function openDialog(id) {
  const d = $(id);
  d.showModal();
  return d;
}

function fieldError(form, e) {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  if (e.field && form.elements[e.field]) form.elements[e.field].setAttribute('aria-invalid', 'true');
}

async function action(label, fn) {
  try {
    const msg = await fn();
    status(msg, 'ok');
    pollNow();
    return true;
  } catch (e) {
    if (e.status === 401) { showAuth(e); return false; }
    status(label + ' failed: ' + e, 'err');
    return e;
  }
}

function startPurge() {
  const name = state.route.name;
  $('#purge-name').textContent = name;
  $('#purge-input').value = '';
  $('#purge-confirm').disabled = true;
  openDialog('#purge-dialog');
  $('#purge-input').focus();
}

async function confirmPurge() {
  const name = state.route.name;
  if ($('#purge-input').value !== name) return;
  $('#purge-dialog').close();
  await action('Purge', async () => {
    const r = await api('POST', apiQueue(name) + '/purge');
    return 'Purged ' + fmtExact(num(r.purged)) + ' messages from ' + (r.queue || name) + '.';
  });
  loadPeek();
}

function startRedrive() {
  const name = state.route.name;
  const sources = dlqSources(name);
  $('#redrive-from').textContent = name;
  $('#redrive-to').value = sources[0] || '';
  $('#redrive-max').value = '';
  $('#redrive-sources').innerHTML = String(sources.length
    ? html`Dead-letters into this queue: ${sources.map((s, i) => html`${i ? ', ' : ''}<a href="#" data-pick="${s}">${s}</a>`)}`
    : html`No queue dead-letters into this one; name the destination.`);
  // Offer every queue name as a suggestion. Rebuilt per opening, never per poll.
  $('#queue-names').innerHTML = String(html`${state.queues.filter((r) => r.name !== name).map((r) => html`<option value="${r.name}">`)}`);
  for (const el of $('#redrive-form').querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  openDialog('#redrive-dialog');
  $('#redrive-to').focus();
}

async function confirmRedrive() {
  const name = state.route.name;
  const body = {};
  const to = $('#redrive-to').value.trim();
  const max = Number($('#redrive-max').value || 0);
  if (to) body.to = to;
  if (max > 0) body.max = max;
  const r = await action('Redrive', async () => {
    const res = await api('POST', apiQueue(name) + '/redrive', body);
    return 'Moved ' + fmtExact(num(res.moved)) + ' messages from ' + (res.from || name) + ' to ' + (res.to || to) + '.';
  });
  if (r === true) { $('#redrive-dialog').close(); loadPeek(); } else if (r) fieldError($('#redrive-form'), r);
}

let deleting = null;
function startDelete(id) {
  deleting = { name: state.route.name, id };
  $('#delete-id').textContent = id;
  $('#delete-queue').textContent = deleting.name;
  openDialog('#delete-dialog');
}

async function confirmDelete() {
  const d = deleting;
  $('#delete-dialog').close();
  if (!d) return;
  await action('Delete', async () => {
    await api('DELETE', apiQueue(d.name) + '/messages/' + encodeURIComponent(d.id));
    return 'Deleted message ' + d.id + ' from ' + d.name + '.';
  });
  loadPeek();
}

// ---------------------------------------------------------------------------------------------
// Charts: plain SVG lines over a fixed 15-minute window ending now, with a hover read-out.

const SVG_NS = 'http://www.w3.org/2000/svg';

function niceStep(v) {
  if (!(v > 0)) return 1;
  const e = Math.pow(10, Math.floor(Math.log10(v)));
  const f = v / e;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e;
}

const fmtAxis = (v) => (v >= 1000 ? fmtCount(v) : Number.isInteger(v) ? String(v) : v.toFixed(1));

class Chart {
  // series: [{key, label, cls}]; fmt formats a value for the legend.
  constructor(figure, series, fmt) {
    this.series = series;
    this.fmt = fmt;
    this.samples = [];
    this.hover = null;
    this.legend = document.createElement('div');
    this.legend.className = 'legend';
    this.svg = document.createElementNS(SVG_NS, 'svg');
    this.svg.setAttribute('class', 'plot');
    figure.append(this.legend, this.svg);
    this.svg.addEventListener('mousemove', (e) => {
      const box = this.svg.getBoundingClientRect();
      this.hover = e.clientX - box.left;
      this.draw();
    });
    this.svg.addEventListener('mouseleave', () => { this.hover = null; this.draw(); });
  }

  update(samples) { this.samples = samples; this.draw(); }

  draw() {
    const W = Math.max(200, this.svg.clientWidth || 600), H = 150;
    const L = 44, R = 10, T = 8, B = 20;
    const t1 = Date.now(), t0 = t1 - HISTORY_MS;
    const x = (t) => L + ((t - t0) / HISTORY_MS) * (W - L - R);
    const samples = this.samples.filter((s) => s.t >= t0);
    let max = 0;
    for (const s of samples) for (const se of this.series) if (s[se.key] > max) max = s[se.key];
    const step = niceStep(max / 4);
    const top = Math.max(step, Math.ceil(max / step) * step);
    const y = (v) => T + (1 - v / top) * (H - T - B);

    let out = '';
    for (let v = 0; v <= top + step / 2; v += step) {
      out += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/>`;
      out += `<text class="ylab" x="${L - 6}" y="${y(v) + 4}">${esc(fmtAxis(v))}</text>`;
    }
    // A tick every 5 minutes, on the clock's 5-minute marks.
    const five = 5 * 60 * 1000;
    for (let t = Math.ceil(t0 / five) * five; t <= t1; t += five) {
      out += `<line class="tick" x1="${x(t)}" x2="${x(t)}" y1="${T}" y2="${H - B}"/>`;
      out += `<text class="xlab" x="${x(t)}" y="${H - 5}">${esc(new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }))}</text>`;
    }
    // A missing value (no rate yet, or a failed poll) breaks the line instead of bridging it.
    for (const se of this.series) {
      let d = '', pen = 'M';
      for (const s of samples) {
        const v = s[se.key];
        if (v == null) { pen = 'M'; continue; }
        d += `${pen}${x(s.t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = 'L';
      }
      if (d) out += `<path class="line ${se.cls}" d="${d}"/>`;
      // The newest point gets a dot: a lone first sample would otherwise be invisible.
      const last = samples[samples.length - 1];
      if (last && last[se.key] != null) out += `<circle class="end ${se.cls}" cx="${x(last.t)}" cy="${y(last[se.key])}" r="2"/>`;
    }

    // The read-out: the sample nearest the pointer, or the latest.
    let pick = samples[samples.length - 1];
    if (this.hover != null && samples.length) {
      const t = t0 + ((this.hover - L) / (W - L - R)) * HISTORY_MS;
      pick = samples.reduce((a, s) => (Math.abs(s.t - t) < Math.abs(a.t - t) ? s : a));
      out += `<line class="cursor" x1="${x(pick.t)}" x2="${x(pick.t)}" y1="${T}" y2="${H - B}"/>`;
      for (const se of this.series) {
        if (pick[se.key] != null) out += `<circle class="dot ${se.cls}" cx="${x(pick.t)}" cy="${y(pick[se.key])}" r="3"/>`;
      }
    }
    if (!samples.length) out += `<text class="nodata" x="${(L + W - R) / 2}" y="${H / 2}">collecting…</text>`;
    this.svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    this.svg.setAttribute('height', H);
    this.svg.innerHTML = out;

    this.legend.innerHTML = String(html`${this.series.map((se) =>
      html`<span class="item"><span class="sw ${se.cls}"></span>${se.label} <b>${pick ? this.fmt(pick[se.key]) : '—'}</b></span>`)}${
      pick ? html`<span class="when">${this.hover != null ? fmtClock(pick.t) : 'now'}</span>` : ''}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring: one listener per region (event delegation), none per row.

function init() {
  state.threshold = Math.max(1, Number(store('local', THRESHOLD_KEY)) || 60);
  try {
    const s = JSON.parse(store('local', SORT_KEY) || 'null');
    if (s && COLS.includes(s.col) && (s.dir === 1 || s.dir === -1)) state.sort = s;
  } catch (e) { /* keep the default */ }

  const rateSeries = [
    { key: 'enq', label: 'enqueue', cls: 'r-enq' },
    { key: 'del', label: 'deliver', cls: 'r-del' },
    { key: 'ack', label: 'ack', cls: 'r-ack' },
  ];
  charts = {
    depth: new Chart($('#chart-depth'), [
      { key: 'ready', label: 'ready', cls: 'ready' },
      { key: 'leased', label: 'leased', cls: 'leased' },
      { key: 'delayed', label: 'delayed', cls: 'delayed' },
    ], fmtCount),
    rates: new Chart($('#chart-rates'), rateSeries, fmtRate),
    queue: new Chart($('#chart-queue'), rateSeries, fmtRate),
  };

  const threshold = $('#threshold');
  threshold.value = state.threshold;
  threshold.addEventListener('change', () => {
    const v = Math.round(Number(threshold.value));
    if (v >= 1) { state.threshold = v; store('local', THRESHOLD_KEY, String(v)); render(); } else threshold.value = state.threshold;
  });

  // Filtering 1,000 rows on every keystroke is cheap, but coalesce to one render per frame.
  let filterFrame = 0;
  $('#filter').addEventListener('input', (e) => {
    state.filter = e.target.value.trim();
    cancelAnimationFrame(filterFrame);
    filterFrame = requestAnimationFrame(renderTable);
  });

  $('#queue-table thead').addEventListener('click', (e) => {
    const th = e.target.closest('th[data-sort]');
    if (!th) return;
    const col = th.dataset.sort;
    // Names sort A→Z first; numbers biggest first, since that is what one looks for.
    state.sort = state.sort.col === col ? { col, dir: -state.sort.dir } : { col, dir: TEXT_COLS.has(col) ? 1 : -1 };
    store('local', SORT_KEY, JSON.stringify(state.sort));
    renderTable();
  });

  $('#peek-tabs').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-state]');
    if (!b) return;
    state.peek.state = b.dataset.state;
    state.peek.messages = [];
    render();
    renderPeek();
    loadPeek();
  });
  $('#peek-live').addEventListener('change', (e) => { if (e.target.checked) loadPeek(); });
  $('#peek-table tbody').addEventListener('click', (e) => {
    const del = e.target.closest('button[data-action="delete"]');
    if (del) { startDelete(del.dataset.id); return; }
    if (e.target.closest('a') || String(window.getSelection())) return;  // let links and text selection be
    const tr = e.target.closest('tr[data-id]');
    if (!tr) return;
    const id = tr.dataset.id, ex = state.peek.expanded;
    if (ex.has(id)) ex.delete(id); else ex.add(id);
    tr.classList.toggle('expanded', ex.has(id));
  });

  $('#purge-button').addEventListener('click', startPurge);
  $('#purge-input').addEventListener('input', (e) => {
    $('#purge-confirm').disabled = e.target.value !== state.route.name;
  });
  $('#purge-form').addEventListener('submit', (e) => { e.preventDefault(); confirmPurge(); });
  $('#redrive-button').addEventListener('click', startRedrive);
  $('#redrive-form').addEventListener('submit', (e) => { e.preventDefault(); confirmRedrive(); });
  $('#redrive-sources').addEventListener('click', (e) => {
    const a = e.target.closest('a[data-pick]');
    if (a) { e.preventDefault(); $('#redrive-to').value = a.dataset.pick; }
  });
  $('#delete-form').addEventListener('submit', (e) => { e.preventDefault(); confirmDelete(); });
  $('#status').addEventListener('click', (e) => { e.currentTarget.hidden = true; });
  document.addEventListener('click', (e) => {
    const c = e.target.closest('[data-close]');
    if (c) c.closest('dialog').close();
  });

  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const tok = $('#token-input').value.trim();
    if (!tok) return;
    store('session', TOKEN_KEY, tok);
    $('#token-input').value = '';
    updateForgetLink();
    // authNeeded stays set until a poll succeeds: hideAuth() then brings the routed view back.
    $('#token-error').hidden = true;
    setConn('connecting');
    $('#conn-text').textContent = 'connecting…';
    pollNow();
  });
  $('#forget-token').addEventListener('click', (e) => {
    e.preventDefault();
    store('session', TOKEN_KEY, null);
    updateForgetLink();
    status('Token forgotten.', 'ok');
    pollNow();
  });

  // Scrolling the overview moves the window of rendered rows (at most once per frame).
  let scrollFrame = 0;
  window.addEventListener('scroll', () => {
    if (state.route.view !== 'overview' || state.authNeeded) return;
    cancelAnimationFrame(scrollFrame);
    scrollFrame = requestAnimationFrame(renderWindow);
  }, { passive: true });

  window.addEventListener('hashchange', route);
  // The charts follow the width of their panels.
  let resizeFrame = 0;
  window.addEventListener('resize', () => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => {
      for (const c of Object.values(charts)) c.draw();
      if (state.route.view === 'overview') { lastWindow = ''; renderWindow(); }
    });
  });

  updateForgetLink();
  route();
  poll();
}

document.addEventListener('DOMContentLoaded', init);
