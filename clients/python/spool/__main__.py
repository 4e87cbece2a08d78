"""python3 -m spool: a tiny command line over the library.

  python3 -m spool send QUEUE [PAYLOAD ...]      one message per argument, or per stdin line
  python3 -m spool worker MODULE:FUNC --queue Q  run FUNC(job) as a worker until SIGTERM/SIGINT
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

from . import TLS, Client, SpoolError, Worker, run_workers


def _client(args: argparse.Namespace) -> Client:
    tls = None
    if args.tls_ca or args.tls_cert:
        tls = TLS(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
    return Client(args.server, token=args.token, tls=tls)


def _send(args: argparse.Namespace) -> int:
    with _client(args) as client:
        q = client.queue(args.queue)
        lines = args.payload or (line.rstrip("\n") for line in sys.stdin)
        futures = [q.send_async(p) for p in lines]
        q.flush()
        for f in futures:
            print(f.result())
    return 0


def _worker(args: argparse.Namespace) -> int:
    module_name, _, func_name = args.target.partition(":")
    if not func_name:
        raise SystemExit("worker: give MODULE:FUNC, e.g. jobs:make_thumbnails")
    sys.path.insert(0, os.getcwd())
    handler = getattr(importlib.import_module(module_name), func_name)
    if isinstance(handler, Worker):  # already decorated with @spool.worker
        run_workers(handler)
        return 0
    if not args.queue:
        raise SystemExit("worker: --queue is required unless FUNC is a @spool.worker")
    client = _client(args)
    run_workers(Worker(client, args.queue, handler, concurrency=args.concurrency,
                       max_outstanding=args.max_outstanding, timeout=args.timeout))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m spool", description="Spool's Python client.")
    p.add_argument("--server", default=os.environ.get("SPOOL_SERVER", "127.0.0.1:7420"),
                   help="spoold's gRPC address (SPOOL_SERVER; default 127.0.0.1:7420)")
    p.add_argument("--token", default=os.environ.get("SPOOL_TOKEN"),
                   help="bearer token (SPOOL_TOKEN)")
    p.add_argument("--tls-ca", help="PEM CA of spoold's certificate: use TLS")
    p.add_argument("--tls-cert", help="PEM client certificate, for mutual TLS")
    p.add_argument("--tls-key", help="PEM key of --tls-cert")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send", help="enqueue messages (arguments, or stdin lines); prints ids")
    s.add_argument("queue")
    s.add_argument("payload", nargs="*")
    s.set_defaults(run=_send)
    w = sub.add_parser("worker", help="run MODULE:FUNC on every message of a queue")
    w.add_argument("target", metavar="MODULE:FUNC")
    w.add_argument("--queue")
    w.add_argument("--concurrency", type=int, default=1)
    w.add_argument("--max-outstanding", type=int)
    w.add_argument("--timeout", type=float, help="seconds a job may run before it is nacked")
    w.set_defaults(run=_worker)
    args = p.parse_args(argv)
    try:
        return args.run(args)
    except SpoolError as e:
        print(f"spool: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
