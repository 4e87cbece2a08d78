'use strict';
// A spoold process for the tests, on a fixed loopback port so a restart keeps its address.
const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const http = require('http');

const SOURCE = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.SPOOL_BIN_DIR || path.join(SOURCE, 'build', 'bin');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(predicate, seconds, what) {
  const giveUp = Date.now() + 1000 * seconds;
  for (;;) {
    let ok = false;
    try { ok = await predicate(); } catch (_) { ok = false; }
    if (ok) return;
    if (Date.now() > giveUp) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await sleep(20);
  }
}

class Spoold {
  constructor(dir, args = []) {
    this.dir = dir;
    this.data = path.join(dir, 'data');
    this.args = args;
    this.proc = null;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const portFile = path.join(this.dir, 'port');
    fs.rmSync(portFile, { force: true });
    const log = fs.openSync(path.join(this.dir, 'spoold.log'), 'a');
    this.proc = spawn(path.join(BIN, 'spoold'), ['--listen', `127.0.0.1:${this.port}`,
      '--http-listen', '127.0.0.1:0', '--data-dir', this.data, '--port-file', portFile,
      ...this.args], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.exited = exited;
    await waitFor(() => {
      if (this.proc.exitCode !== null) throw new Error('spoold exited');
      const lines = fs.existsSync(portFile) ? fs.readFileSync(portFile, 'utf8').split(/\s+/) : [];
      if (lines.length >= 2 && lines[1]) { this.httpPort = Number(lines[1]); return true; }
      return false;
    }, 30, 'spoold to start');
    this.target = `127.0.0.1:${this.port}`;
    return this;
  }

  async kill() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }

  metric(line) {
    return new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: this.httpPort, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (c) => { body += c; });
        res.on('end', () => {
          const m = body.split('\n').find((l) => l.startsWith(line + ' '));
          resolve(m ? Number(m.split(' ')[1]) : 0);
        });
      }).on('error', reject);
    });
  }
}

async function tempSpoold(t, args = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-node-'));
  const s = await new Spoold(dir, args).start();
  t.after(async () => { await s.kill(); fs.rmSync(dir, { recursive: true, force: true }); });
  return s;
}

module.exports = { Spoold, tempSpoold, waitFor, sleep, SOURCE };
