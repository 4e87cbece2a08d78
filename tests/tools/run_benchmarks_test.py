#!/usr/bin/python3
"""tools/bench/run_benchmarks.py --quick runs targets 1, 2, 4, 5 and 6 end to end.

One run each with 1-second phases (target 5 at a scale of 20,000 messages), against fresh
spoold and spool-append-server processes the script starts on 127.0.0.1: every table it prints
must be there with a figure in every cell (a phase missing from spool-bench's JSON, or a server
that failed, stops the script instead). No figure is judged. --quick with target 3, or with
target 5 at its full scale, is refused.
"""
import os
import re
import subprocess
import sys
import unittest

SCRIPT = os.path.join(os.environ.get("SPOOL_SOURCE_DIR", "."), "tools", "bench",
                      "run_benchmarks.py")


class RunBenchmarksTest(unittest.TestCase):
    def assertTablesFilled(self, out, names):
        """The printed tables are `names`, in order, each with one row and a figure in every
        cell; returns their texts."""
        tables = re.split(r"\n### ", out)[1:]
        self.assertEqual([t.split(":")[0] for t in tables], names)
        for t in tables:
            lines = [l for l in t.splitlines() if l.startswith("|")]
            header, rows = lines[0], lines[2:]
            self.assertEqual(len(rows), 1, t)
            cells = [c.strip() for c in rows[0].strip("|").split("|")]
            self.assertEqual(len(cells), header.count("|") - 1, t)
            for c in cells:
                self.assertRegex(c, r"\d", f"an empty cell in: {t}")
        return tables

    def test_quick_run_prints_every_table_filled(self):
        out = subprocess.run(["/usr/bin/python3", SCRIPT, "--quick", "--runs", "1", "--only",
                              "1", "2", "4", "6"],
                             capture_output=True, text=True, timeout=240, check=True).stdout
        tables = self.assertTablesFilled(out, ["Target 1", "Target 2", "Target 4", "Target 6"])
        self.assertIn("Spool ÷ append server", tables[1])

    def test_quick_target5_prints_both_tables_filled(self):
        out = subprocess.run(["/usr/bin/python3", SCRIPT, "--quick", "--only", "5", "--scale",
                              "20000"],
                             capture_output=True, text=True, timeout=240, check=True).stdout
        self.assertTablesFilled(out, ["Target 5a", "Target 5b"])
        self.assertRegex(out, r"restart to SERVING \d+\.\d\d s")
        self.assertRegex(out, r"killed \(SIGKILL\): restart to SERVING \d+\.\d\d s, replaying "
                              r"\d+ MiB of log")

    def test_quick_refuses_the_long_targets(self):
        for args, error in ((["--only", "3"], "--quick goes with"),
                            (["--only", "5"], "needs --scale 100000 or less")):
            r = subprocess.run(["/usr/bin/python3", SCRIPT, "--quick", *args],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(error, r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
