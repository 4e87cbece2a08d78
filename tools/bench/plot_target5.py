#!/usr/bin/python3
"""Draws target 5's scaling curves (BENCHMARKS.md) as a PNG, with nothing but the standard
library, so it works on a fresh clone after the README's set-up command.

    tools/bench/plot_target5.py RESULTS.json OUT.png

RESULTS.json is what `run_benchmarks.py --only 5 --target5-json FILE` writes:
    {"depth":   [{"n": 100000, "p99_ms": 2.7, "baseline_ms": 2.5, "rss_mib": 90}, ...],
     "history": [{"n": 100000, "p99_ms": 2.2, "baseline_ms": 2.4, "rss_mib": 106}, ...]}

Two panels side by side, x = messages (log scale): left, Lease p99 as a ratio to its baseline
(the 10k-message queue, or a new queue, measured in turn on the same server; "before_ms", the
baseline measured before the load, is not drawn) with the 1.2x target as a grey line; right,
spoold's RSS in MiB with the 1 GiB target. Blue: messages stored (depth). Orange: messages consumed (history).
"""
import json
import math
import struct
import sys
import zlib

# A 3x5 bitmap font for tick labels: each glyph is five rows of three bits.
GLYPHS = {
    "0": ["111", "101", "101", "101", "111"], "1": ["010", "110", "010", "010", "111"],
    "2": ["111", "001", "111", "100", "111"], "3": ["111", "001", "111", "001", "111"],
    "4": ["101", "101", "111", "001", "001"], "5": ["111", "100", "111", "001", "111"],
    "6": ["111", "100", "111", "101", "111"], "7": ["111", "001", "010", "010", "010"],
    "8": ["111", "101", "111", "101", "111"], "9": ["111", "101", "111", "001", "111"],
    ".": ["000", "000", "000", "000", "010"], "k": ["100", "101", "110", "101", "101"],
    "M": ["101", "111", "111", "101", "101"], "x": ["000", "101", "010", "101", "000"],
    " ": ["000", "000", "000", "000", "000"],
}
WHITE, BLACK, GREY = (255, 255, 255), (40, 40, 40), (190, 190, 190)
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)


class Canvas:
    def __init__(self, width, height):
        self.w, self.h = width, height
        self.px = [[WHITE] * width for _ in range(height)]

    def dot(self, x, y, color, size=1):
        for dy in range(size):
            for dx in range(size):
                xx, yy = int(x) + dx, int(y) + dy
                if 0 <= xx < self.w and 0 <= yy < self.h:
                    self.px[yy][xx] = color

    def line(self, x0, y0, x1, y1, color, width=1):
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(steps + 1):
            t = i / steps
            self.dot(x0 + (x1 - x0) * t - width // 2, y0 + (y1 - y0) * t - width // 2, color, width)

    def text(self, x, y, s, color=BLACK, scale=2):
        for i, ch in enumerate(s):
            for row, bits in enumerate(GLYPHS.get(ch, GLYPHS[" "])):
                for col, bit in enumerate(bits):
                    if bit == "1":
                        self.dot(x + (i * 4 + col) * scale, y + row * scale, color, scale)

    def png(self, path):
        raw = b"".join(b"\0" + bytes(c for p in row for c in p) for row in self.px)

        def chunk(kind, data):
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
            f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)))
            f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
            f.write(chunk(b"IEND", b""))


def count_label(n):
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k"


def panel(c, left, top, width, height, series, y_max, y_ticks, target, y_fmt):
    """series: [(color, [(x, y), ...])]; x on a log scale from 10^4.7 to 10^7.2."""
    x_lo, x_hi = 10 ** 4.7, 10 ** 7.2

    def sx(x):
        return left + (math.log10(x) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo)) * width

    def sy(y):
        return top + height - min(y, y_max) / y_max * height

    c.line(left, top, left, top + height, BLACK)
    c.line(left, top + height, left + width, top + height, BLACK)
    for t in y_ticks:
        c.line(left - 4, sy(t), left, sy(t), BLACK)
        label = y_fmt(t)
        c.text(left - 8 - len(label) * 8, sy(t) - 5, label)
    for x in (1e5, 1e6, 1e7):
        c.line(sx(x), top + height, sx(x), top + height + 4, BLACK)
        label = count_label(x)
        c.text(sx(x) - len(label) * 4, top + height + 8, label)
    for x in range(int(left), int(left + width), 6):  # the target, dashed
        c.line(x, sy(target), x + 3, sy(target), GREY)
    for color, points in series:
        pts = [(sx(x), sy(y)) for x, y in points]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            c.line(x0, y0, x1, y1, color, 2)
        for x, y in pts:
            c.dot(x - 3, y - 3, color, 7)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        data = json.load(f)
    c = Canvas(840, 300)
    ratio = [(color, [(p["n"], p["p99_ms"] / p["baseline_ms"]) for p in data[key]])
             for color, key in ((BLUE, "depth"), (ORANGE, "history"))]
    panel(c, 70, 20, 320, 240, ratio, 2.5, [0, 0.5, 1, 1.5, 2, 2.5], 1.2, lambda t: f"{t:g}x")
    rss = [(color, [(p["n"], p["rss_mib"]) for p in data[key]])
           for color, key in ((BLUE, "depth"), (ORANGE, "history"))]
    panel(c, 500, 20, 320, 240, rss, 1200, [0, 250, 500, 750, 1000], 1024, lambda t: f"{t:g}")
    c.png(sys.argv[2])


if __name__ == "__main__":
    main()
