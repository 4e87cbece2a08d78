#!/usr/bin/python3
"""spoolctl against a real spoold: every command, exit codes, JSON parsed, table forms
compared with golden files, purge confirmation on a real terminal (a pty), offline inspect
and verify on a stopped store.

Set SPOOL_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change of format.
"""
import base64
import json
import os
import pty
import re
import select
import signal
import subprocess
import tempfile
import time
import unittest

SOURCE = os.environ.get("SPOOL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SPOOL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


class Spoold:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        port_file = data_dir + ".port"
        if os.path.exists(port_file):
            os.remove(port_file)
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "spoold"), "--listen", "127.0.0.1:0", "--data-dir", data_dir,
             "--port-file", port_file], stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("spoold did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            self.address = "127.0.0.1:" + f.read().strip()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def spoolctl(address, *args, stdin=b"", expect=None):
    """Runs spoolctl; returns (exit code, stdout bytes, stderr text)."""
    env = dict(os.environ, SPOOL_SERVER=address) if address else dict(os.environ)
    p = subprocess.run([os.path.join(BIN, "spoolctl"), *args], input=stdin,
                       capture_output=True, env=env, timeout=30)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"spoolctl {' '.join(args)} exited {p.returncode}, wanted {expect}: "
                             f"{p.stderr.decode()}")
    return p.returncode, p.stdout, p.stderr.decode()


def on_terminal(address, args, typed):
    """Runs spoolctl with a pty as its terminal, types `typed` at its prompt; returns
    (exit code, everything it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["SPOOL_SERVER"] = address
        os.execv(os.path.join(BIN, "spoolctl"), ["spoolctl", *args])
    out = b""
    typed_yet = False
    deadline = time.time() + 20
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not typed_yet and b"Type the queue name" in out:
            os.write(fd, typed.encode() + b"\n")
            typed_yet = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def golden(name, text):
    path = os.path.join(GOLDEN, name)
    if os.environ.get("SPOOL_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        return f.read()


class SpoolctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.server = Spoold(os.path.join(cls.tmp.name, "data"))
        cls.addr = cls.server.address

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    def ctl(self, *args, **kw):
        return spoolctl(self.addr, *args, **kw)

    def json(self, *args, stdin=b"", expect=0):
        _, out, _ = self.ctl("--output", "json", *args, stdin=stdin, expect=expect)
        return json.loads(out)

    def test_queues_table_and_json(self):
        self.ctl("create", "gq-dead", expect=0)
        self.ctl("create", "gq-orders", "--max-deliveries", "5", "--dead-letter", "gq-dead", expect=0)
        self.ctl("create", "gq-empty", expect=0)
        self.ctl("send", "gq-orders", "one", "--delay", "1h", expect=0)
        self.ctl("send", "gq-orders", "two", "--delay", "1h", expect=0)
        _, out, _ = self.ctl("queues", "--prefix", "gq-", expect=0)
        self.assertEqual(out.decode(), golden("queues.txt", out.decode()))
        doc = self.json("queues", "--prefix", "gq-")
        self.assertEqual([q["name"] for q in doc["queues"]], ["gq-dead", "gq-empty", "gq-orders"])
        self.assertEqual(doc["totals"]["delayed"], "2")  # uint64 is a string in proto JSON
        self.assertEqual(doc["queues"][2]["config"]["dead_letter_queue"], "gq-dead")

    def test_create_update_stats_delete(self):
        q = self.json("create", "cu", "--visibility-timeout", "2m", "--max-depth", "100",
                      "--max-payload", "64KiB", "--retention", "4d", "--dedup-window", "10m")
        self.assertEqual(q["config"]["visibility_timeout"], "120s")
        self.assertEqual(q["config"]["max_payload_bytes"], 65536)
        # update changes only the flags given
        q = self.json("update", "cu", "--max-depth", "7")
        self.assertEqual(q["config"]["max_depth"], "7")
        self.assertEqual(q["config"]["visibility_timeout"], "120s")
        self.assertEqual(q["config"]["retention"], "345600s")
        _, out, _ = self.ctl("stats", "cu", expect=0)
        text = re.sub(r"(created: +)\S+", r"\1TIME", out.decode())
        self.assertEqual(text, golden("stats.txt", text))
        self.assertEqual(self.json("stats", "cu")["name"], "cu")
        self.ctl("delete", "cu", expect=0)
        rc, _, err = self.ctl("stats", "cu")
        self.assertEqual((rc, err), (1, 'spoolctl: queue "cu" not found\n'))

    def test_errors_are_one_sentence_with_exit_codes(self):
        rc, out, err = self.ctl("create", "bad", "--visibility-timeout", "0s")
        self.assertEqual(rc, 1)
        self.assertEqual(err, "spoolctl: --visibility-timeout must be between 1s and 12h (got 0s)\n")
        rc, _, err = self.ctl("create", "bad", "--visibility-timeout", "30x")
        self.assertEqual(rc, 2)
        self.assertIn('--visibility-timeout: "30x" is not a duration', err)
        rc, _, err = self.ctl("create", "bad", "--max-deliveries", "3")
        self.assertEqual((rc, err), (1, "spoolctl: --dead-letter is required when max_deliveries is set\n"))
        rc, _, err = self.ctl("no-such-command")
        self.assertEqual(rc, 2)
        rc, _, err = spoolctl("127.0.0.1:1", "queues")
        self.assertEqual(rc, 1)
        self.assertEqual(err, "spoolctl: cannot reach spoold at 127.0.0.1:1 (connection refused) "
                              "— is it running?\n")
        self.assertNotIn("Traceback", err)

    def test_help_on_every_command_has_an_example(self):
        commands = ["queues", "create", "update", "delete", "stats", "peek", "send", "lease", "ack",
                    "nack", "extend", "purge", "redrive", "delete-message", "watch", "health", "tail",
                    "inspect", "verify"]
        for c in commands:
            rc, out, _ = self.ctl(c, "--help")
            self.assertEqual(rc, 0, c)
            self.assertIn("Example", out.decode(), c)

    def test_send_lines_over_publish(self):
        # Many batches (1,000 lines each), several of them in flight on one Publish stream.
        self.ctl("create", "sl", expect=0)
        lines = b"".join(b"line %d\n" % i for i in range(12345))
        _, out, _ = self.ctl("send", "sl", "--lines", stdin=lines, expect=0)
        self.assertEqual(out.decode(), 'sent 12345 messages to "sl"\n')
        stats = self.json("stats", "sl")
        self.assertEqual(int(stats["stats"]["total"]), 12345)
        head = self.json("peek", "sl", "--limit", "3")
        self.assertEqual([base64.b64decode(m["payload"]) for m in head["messages"]],
                         [b"line 0", b"line 1", b"line 2"])
        # A refused batch stops the send and is named by its lines; nothing of it is stored.
        # The batch behind it was in flight already and fits, so it is stored, and said so.
        self.ctl("create", "sl-small", "--max-depth", "1500", expect=0)
        lines = b"".join(b"x%d\n" % i for i in range(2500))
        rc, out, err = self.ctl("send", "sl-small", "--lines", stdin=lines)
        self.assertEqual(rc, 1, err)
        self.assertIn("lines 1001-2000 of standard input were not sent\n", err)
        self.assertIn('1500 messages sent to "sl-small"', err)
        self.assertIn("max_depth", err)
        self.assertEqual(int(self.json("stats", "sl-small")["stats"]["total"]), 1500)

    def test_tail_prints_as_messages_arrive_and_acks_or_releases(self):
        self.ctl("create", "tq", expect=0)
        self.ctl("send", "tq", "--lines", stdin=b"".join(b"t%d\n" % i for i in range(5)),
                 expect=0)
        # Without --ack: printed, then released at the end (visible again, delivery counted).
        _, out, err = self.ctl("--output", "json", "tail", "tq", "--max", "3", expect=0)
        docs = [json.loads(line) for line in out.decode().splitlines()]
        self.assertEqual([base64.b64decode(d["payload"]) for d in docs], [b"t0", b"t1", b"t2"])
        self.assertEqual([d["delivery_count"] for d in docs], [1, 1, 1])
        self.assertEqual(err, 'spoolctl: 3 messages from "tq", released\n')
        stats = self.json("stats", "tq")["stats"]
        self.assertEqual((stats["ready"], stats["leased"]), ("5", "0"))
        # With --ack: each one printed is acked on the stream; the table form is one line each.
        # All five had been pushed to the first tail (its credit is 100), so all are on their
        # second delivery.
        _, out, err = self.ctl("tail", "tq", "--ack", "--max", "4", expect=0)
        lines = out.decode().splitlines()
        self.assertEqual([line.split()[1:] for line in lines],
                         [["2", "t0"], ["2", "t1"], ["2", "t2"], ["2", "t3"]])
        self.assertEqual(err, 'spoolctl: 4 messages from "tq", 4 acked\n')
        stats = self.json("stats", "tq")["stats"]
        self.assertEqual((stats["total"], stats["acked_total"]), ("1", "4"))
        # Live: a tail that is already running prints what is sent after it started.
        self.ctl("tail", "tq", "--ack", "--max", "1", expect=0)  # empties the queue
        tail = subprocess.Popen([os.path.join(BIN, "spoolctl"), "--server", self.addr, "tail",
                                 "tq", "--ack", "--max", "2", "--for", "20s"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.3)
        self.ctl("send", "tq", "late-1", expect=0)
        self.ctl("send", "tq", "late-2", expect=0)
        out, err = tail.communicate(timeout=25)
        self.assertEqual(tail.returncode, 0, err)
        self.assertEqual([line.split()[2] for line in out.decode().splitlines()],
                         ["late-1", "late-2"])
        self.assertEqual(self.json("stats", "tq")["stats"]["total"], "0")
        # --for ends a tail that sees nothing; Ctrl-C (SIGINT) ends one cleanly too.
        _, out, err = self.ctl("tail", "tq", "--for", "300ms", expect=0)
        self.assertEqual((out, err), (b"", 'spoolctl: 0 messages from "tq", released\n'))
        self.ctl("send", "tq", "held", expect=0)
        tail = subprocess.Popen([os.path.join(BIN, "spoolctl"), "--server", self.addr, "tail",
                                 "tq", "--for", "20s"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertIn(b"held", tail.stdout.readline())
        self.assertEqual(self.json("stats", "tq")["stats"]["leased"], "1")
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=10)
        self.assertEqual(tail.returncode, 0, err)
        self.assertEqual(self.json("stats", "tq")["stats"]["ready"], "1")  # released at once
        # Errors name the queue or the flag.
        rc, _, err = self.ctl("tail", "no-such-queue", "--for", "5s")
        self.assertEqual(rc, 1)
        self.assertIn('"no-such-queue"', err)
        rc, _, err = self.ctl("tail", "tq", "--max-outstanding", "20000", "--for", "5s")
        self.assertEqual(rc, 1)
        self.assertIn("--max-outstanding", err)

    def test_send_and_peek(self):
        self.ctl("create", "sp", expect=0)
        doc = self.json("send", "sp", '{"file_id": "abc-123", "type": "resize"}',
                        "--attr", "kind=resize", "--attr", "v=1")
        first = doc["results"][0]["message_id"]
        binary = bytes(range(256))
        self.json("send", "sp", "-", stdin=binary)
        self.json("send", "sp", "later", "--delay", "1h")
        dup = self.json("send", "sp", "again", "--dedup-id", "d1")
        dup2 = self.json("send", "sp", "again", "--dedup-id", "d1")
        self.assertTrue(dup2["results"][0]["duplicate"])
        self.assertEqual(dup2["results"][0]["message_id"], dup["results"][0]["message_id"])
        _, out, _ = self.ctl("send", "sp", "--lines", stdin=b"l1\nl2\nl3\n", expect=0)
        self.assertEqual(out.decode(), 'sent 3 messages to "sp"\n')

        peek = self.json("peek", "sp", "--limit", "100")
        self.assertEqual(len(peek["messages"]), 7)
        self.assertEqual(peek["messages"][0]["attributes"], {"kind": "resize", "v": "1"})
        self.assertEqual([m["state"] for m in peek["messages"]].count("MESSAGE_STATE_DELAYED"), 1)
        delayed = self.json("peek", "sp", "--state", "delayed")
        self.assertEqual([m["message_id"] for m in delayed["messages"]],
                         [peek["messages"][2]["message_id"]])
        after = self.json("peek", "sp", "--after", first, "--limit", "1")
        self.assertEqual(after["messages"][0]["message_id"], peek["messages"][1]["message_id"])
        _, raw, _ = self.ctl("peek", "sp", "--after", first, "--raw", expect=0)
        self.assertEqual(raw, binary)  # byte for byte
        _, table, _ = self.ctl("peek", "sp", "--limit", "2", expect=0)
        lines = table.decode().splitlines()
        self.assertEqual(lines[0].split(), ["ID", "STATE", "DELIVERIES", "AGE", "VISIBLE",
                                            "ATTRIBUTES", "PAYLOAD"])
        self.assertIn('{"file_id": "abc-123", "type": "resize"}', lines[1])
        self.assertIn("hex:000102", lines[2])
        self.assertIn("…(256 bytes)", lines[2])
        self.assertEqual(lines[3], f"more: spoolctl peek sp --after {peek['messages'][1]['message_id']}")

    def test_lease_ack_nack_extend(self):
        self.ctl("create", "lq", expect=0)
        self.ctl("send", "lq", "--lines", stdin=b"a\nb\nc\n", expect=0)
        leased = self.json("lease", "lq", "--max", "3", "--visibility-timeout", "5m")
        r = [m["receipt"] for m in leased["messages"]]
        self.assertEqual([m["payload"] for m in leased["messages"]], ["YQ==", "Yg==", "Yw=="])
        acked = self.json("ack", "lq", r[0])
        self.assertEqual(acked["results"][0]["outcome"], "OUTCOME_OK")
        ext = self.json("extend", "lq", r[1], "--visibility-timeout", "10m")
        self.assertEqual(ext["results"][0]["outcome"], "OUTCOME_OK")
        self.assertIn("lease_deadline", ext["results"][0])
        nacked = self.json("nack", "lq", r[2], "--delay", "1h")
        self.assertEqual(nacked["results"][0]["outcome"], "OUTCOME_OK")
        # a stale or forged receipt: the command says so and fails
        rc, out, err = self.ctl("ack", "lq", r[2], "garbage")
        self.assertEqual(rc, 1)
        self.assertIn("lease lost", out.decode())
        self.assertIn("invalid receipt", out.decode())
        stats = self.json("stats", "lq")["stats"]
        self.assertEqual((stats["leased"], stats["delayed"], stats["acked_total"]), ("1", "1", "1"))
        empty = self.json("lease", "lq", "--wait", "200ms")
        self.assertEqual(empty.get("messages", []), [])

    def test_purge_confirmation(self):
        self.ctl("create", "pq", expect=0)
        self.ctl("send", "pq", "--lines", stdin=b"1\n2\n3\n", expect=0)
        rc, _, err = self.ctl("purge", "pq")  # not a terminal, no --yes
        self.assertEqual(rc, 2)
        self.assertIn("without --yes", err)
        rc, text = on_terminal(self.addr, ["purge", "pq"], typed="pqx")
        self.assertEqual(rc, 1)
        self.assertIn("removing 3 messages", text)
        self.assertIn("nothing was changed", text)
        self.assertEqual(self.json("stats", "pq")["stats"]["total"], "3")
        rc, text = on_terminal(self.addr, ["purge", "pq"], typed="pq")
        self.assertEqual(rc, 0)
        self.assertIn('purged 3 messages from "pq"', text)
        self.ctl("send", "pq", "x", expect=0)
        self.assertEqual(self.json("purge", "pq", "--yes"), {"queue": "pq", "purged": "1"})

    def test_redrive_moves_exactly_n_and_resets_delivery_counts(self):
        self.ctl("create", "rd-dead", expect=0)
        self.ctl("create", "rd", "--max-deliveries", "1", "--dead-letter", "rd-dead", expect=0)
        self.ctl("send", "rd", "--lines", stdin=b"".join(b"m%d\n" % i for i in range(5)), expect=0)
        # Each message is delivered once and given back: the next lease dead-letters them all.
        leased = self.json("lease", "rd", "--max", "5")
        self.json("nack", "rd", *[m["receipt"] for m in leased["messages"]])
        self.json("lease", "rd", "--max", "5")
        self.assertEqual(self.json("stats", "rd-dead")["stats"]["total"], "5")
        # In the dead-letter queue, deliver them once more, so their counts are not zero.
        again = self.json("lease", "rd-dead", "--max", "5")
        self.json("nack", "rd-dead", *[m["receipt"] for m in again["messages"]])
        dead = self.json("peek", "rd-dead")["messages"]
        self.assertTrue(all(m["delivery_count"] == 1 for m in dead))
        self.assertTrue(all(m["dead_letter_source_queue"] == "rd" for m in dead))
        _, table, _ = self.ctl("peek", "rd-dead", "--limit", "1", expect=0)
        self.assertIn(f"rd/{dead[0]['dead_letter_source_id']}", table.decode())
        moved = self.json("redrive", "rd-dead", "--to", "rd", "--max", "3")
        self.assertEqual(moved["moved"], "3")
        self.assertEqual(len(moved["messages"]), 3)
        self.assertEqual(self.json("stats", "rd-dead")["stats"]["total"], "2")
        back = self.json("peek", "rd")["messages"]
        self.assertEqual(len(back), 3)
        self.assertTrue(all(m["delivery_count"] == 0 for m in back))
        _, out, _ = self.ctl("redrive", "rd-dead", "--to", "rd", "--rate", "100", expect=0)
        self.assertEqual(out.decode(), 'moved 2 messages from "rd-dead" to "rd"\n')

    def test_delete_message(self):
        self.ctl("create", "dm", expect=0)
        ids = [r["message_id"] for r in self.json("send", "dm", "poison")["results"]]
        self.ctl("delete-message", "dm", ids[0], expect=0)
        rc, _, err = self.ctl("delete-message", "dm", ids[0])
        self.assertEqual(rc, 1)
        self.assertIn("not found", err)
        self.assertEqual(self.json("stats", "dm")["stats"]["deleted_total"], "1")

    def test_watch_computes_rates_from_counter_deltas(self):
        self.ctl("create", "wq", expect=0)
        p = subprocess.Popen([os.path.join(BIN, "spoolctl"), "--server", self.addr, "--output",
                              "json", "watch", "wq", "--interval", "500ms", "--iterations", "2"],
                             stdout=subprocess.PIPE)
        time.sleep(0.2)
        self.ctl("send", "wq", "--lines", stdin=b"x\n" * 100, expect=0)
        out, _ = p.communicate(timeout=20)
        frames = [json.loads(line) for line in out.decode().splitlines()]
        self.assertEqual(len(frames), 2)
        self.assertEqual(frames[1]["rows"][0]["total"], "100")
        self.assertGreater(frames[1]["rows"][0]["enqueued_per_second"], 50)
        _, table, _ = self.ctl("watch", "--iterations", "1", expect=0)
        self.assertIn("ENQUEUED/S", table.decode())

    def test_health(self):
        rc, out, _ = self.ctl("health")
        self.assertEqual((rc, out), (0, b"SERVING\n"))
        self.assertEqual(self.json("health"), {"status": "SERVING"})
        rc, _, _ = spoolctl("127.0.0.1:1", "health")
        self.assertEqual(rc, 1)


class OfflineTest(unittest.TestCase):
    def test_inspect_and_verify_refuse_while_running_and_work_when_stopped(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data")
            server = Spoold(data)
            spoolctl(server.address, "create", "jobs", expect=0)
            spoolctl(server.address, "send", "jobs", "--lines", stdin=b"a\nb\nc\n", expect=0)
            spoolctl(server.address, "lease", "jobs", expect=0)
            rc, _, err = spoolctl(None, "--data-dir", data, "inspect")
            self.assertEqual(rc, 1)
            self.assertEqual(err, f"spoolctl: spoold is running on {data}; stop it first, or use "
                                  "the online commands (spoolctl queues, spoolctl stats NAME)\n")
            rc, _, err = spoolctl(None, "--data-dir", data, "verify")
            self.assertEqual(rc, 1)
            server.stop()
            _, out, _ = spoolctl(None, "--data-dir", data, "--output", "json", "inspect", expect=0)
            doc = json.loads(out)
            jobs = doc["queues"][0]
            self.assertEqual((jobs["name"], jobs["stats"]["total"], jobs["stats"]["leased"]),
                             ("jobs", "3", "1"))
            self.assertEqual([f["name"] for f in doc["families"]],
                             ["default", "messages", "state", "dedup"])
            self.assertGreater(int(doc["disk_bytes"]), 0)
            _, out, _ = spoolctl(None, "--data-dir", data, "inspect", expect=0)
            self.assertIn("TOMBSTONES (EST.)", out.decode())
            _, out, _ = spoolctl(None, "--data-dir", data, "verify", expect=0)
            self.assertEqual(out.decode(), "ok: 1 queue, 3 messages, every invariant holds\n")
            rc, _, err = spoolctl(None, "--data-dir", os.path.join(tmp, "none"), "verify")
            self.assertEqual(rc, 1)
            self.assertIn("no Spool store", err)
            rc, _, err = spoolctl(None, "inspect")
            self.assertEqual(rc, 2)
            self.assertIn("needs --data-dir", err)


class TokenTest(unittest.TestCase):
    def test_token_from_flag_or_environment(self):
        with tempfile.TemporaryDirectory() as tmp:
            tokens = os.path.join(tmp, "tokens")
            with open(tokens, "w") as f:
                f.write("tok-ops admin,produce,consume *\ntok-uploader produce thumbs-*\n")
            port_file = os.path.join(tmp, "port")
            proc = subprocess.Popen([os.path.join(BIN, "spoold"), "--listen", "127.0.0.1:0",
                                     "--data-dir", os.path.join(tmp, "data"), "--auth-file", tokens,
                                     "--port-file", port_file], stderr=subprocess.DEVNULL)
            try:
                deadline = time.time() + 20
                while not os.path.exists(port_file) and time.time() < deadline:
                    time.sleep(0.02)
                with open(port_file) as f:
                    addr = "127.0.0.1:" + f.read().strip()
                rc, _, err = spoolctl(addr, "queues")
                self.assertEqual(rc, 1)
                self.assertIn("needs a token (--token or SPOOL_TOKEN)", err)
                spoolctl(addr, "--token", "tok-ops", "create", "thumbs-a", expect=0)
                spoolctl(addr, "--token", "tok-ops", "create", "secret", expect=0)
                p = subprocess.run([os.path.join(BIN, "spoolctl"), "--server", addr, "--output",
                                    "json", "queues"], capture_output=True, timeout=30,
                                   env=dict(os.environ, SPOOL_TOKEN="tok-uploader"))
                self.assertEqual([q["name"] for q in json.loads(p.stdout)["queues"]], ["thumbs-a"])
                rc, _, err = spoolctl(addr, "--token", "tok-uploader", "purge", "thumbs-a", "--yes")
                self.assertEqual(rc, 1)
                self.assertIn("lacks the admin permission", err)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
