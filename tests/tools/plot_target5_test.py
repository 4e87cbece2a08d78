#!/usr/bin/python3
"""tools/bench/plot_target5.py draws a valid PNG with both curves on it, and refuses bad usage."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

SCRIPT = os.path.join(os.environ.get("SPOOL_SOURCE_DIR", "."), "tools", "bench", "plot_target5.py")
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)


def read_png(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind}"
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2), "expected 8-bit RGB"
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + width * 3
    assert len(raw) == stride * height
    pixels = set()
    for y in range(height):
        row = raw[y * stride + 1:(y + 1) * stride]
        pixels.update(tuple(row[i:i + 3]) for i in range(0, len(row), 3))
    return width, height, pixels


class PlotTest(unittest.TestCase):
    def test_draws_both_curves(self):
        curves = {"depth": [{"n": n, "p99_ms": 2.0, "baseline_ms": 2.0, "rss_mib": n / 20000}
                            for n in (100_000, 1_000_000, 10_000_000)],
                  "history": [{"n": n, "p99_ms": 2.4, "baseline_ms": 2.0, "rss_mib": 120}
                              for n in (100_000, 1_000_000, 10_000_000)]}
        with tempfile.TemporaryDirectory() as d:
            src, out = os.path.join(d, "t5.json"), os.path.join(d, "t5.png")
            with open(src, "w") as f:
                json.dump(curves, f)
            subprocess.run([sys.executable, SCRIPT, src, out], check=True)
            width, height, pixels = read_png(out)
        self.assertEqual((width, height), (840, 300))
        self.assertIn(BLUE, pixels)
        self.assertIn(ORANGE, pixels)

    def test_usage(self):
        r = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("RESULTS.json", r.stderr)


if __name__ == "__main__":
    unittest.main()
