#!/usr/bin/env python3
# A plumbline pipeline worker in plain Python 3 (standard library only): it asks a plumbline
# distributor for tasks, sleeps each task's "workload" seconds, and sends the result to the
# collector, speaking the wire protocol of crates/pipeline/src/wire.rs (a 4-byte big-endian
# length, then one UTF-8 JSON object with a "type").
#
# Run it against plumbline, each command in its own terminal, in any order:
#   plumbline pipeline collector
#   plumbline pipeline distributor --task C:100
#   python3 examples/python/worker.py
# Its defaults match plumbline's: the distributor's workers connect on ipc://worker.ipc (a Unix
# socket in the current folder) and the collector takes results on tcp://127.0.0.1:5558.
# Options: --endpoint, --collector, --task-type (C), --name (py-PID), --prefetch (1).

import argparse
import json
import os
import socket
import struct
import sys
import time

PROTOCOL = 1
MAX_MESSAGE = 1 << 20  # the distributor's cap, 1 MiB of JSON
CONNECT_TIMEOUT = 30.0  # seconds to keep retrying a peer that has not started yet


def connect(endpoint):
    """Connects to tcp://host:port or ipc://path, retrying for up to CONNECT_TIMEOUT."""
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://"):].rpartition(":")
        family, address = None, (host.strip("[]"), int(port))
    elif endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        family, address = socket.AF_UNIX, endpoint[len("ipc://"):]
    else:
        sys.exit(f"'{endpoint}' is not an endpoint: use tcp://host:port or ipc://path")
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        try:
            if family is None:
                return socket.create_connection(address, timeout=5)
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.connect(address)
            except OSError:
                sock.close()
                raise
            return sock
        except OSError as e:
            if time.monotonic() >= deadline:
                sys.exit(f"cannot reach {endpoint} within {CONNECT_TIMEOUT:.0f} s: {e}")
            time.sleep(0.2)


def send(sock, message):
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    sock.sendall(struct.pack(">I", len(body)) + body)


def read_exactly(sock, n):
    """n bytes, or None if the peer closed first."""
    chunks = []
    while n > 0:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def receive(sock):
    """The next message, or None when the peer closed the connection."""
    header = read_exactly(sock, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">I", header)
    if length > MAX_MESSAGE:  # refused before reading (or allocating) the body
        raise ValueError(f"a frame of {length} bytes exceeds the {MAX_MESSAGE}-byte limit")
    body = read_exactly(sock, length)
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))


def main():
    parser = argparse.ArgumentParser(description="A plumbline pipeline worker in Python.")
    parser.add_argument("--endpoint", default="ipc://worker.ipc", help="the distributor's")
    parser.add_argument("--collector", default="tcp://127.0.0.1:5558", help="the collector's")
    parser.add_argument("--task-type", default="C")
    parser.add_argument("--name", default=f"py-{os.getpid()}")
    parser.add_argument("--prefetch", type=int, default=1, help="tasks held beyond the one running")
    parser.add_argument("--token-file", help="the run's shared secret (the roles' --token file:PATH)")
    args = parser.parse_args()
    token = {}
    if args.token_file:
        with open(args.token_file) as f:
            token = {"token": f.read().strip()}

    distributor = connect(args.endpoint)
    collector = connect(args.collector)
    for sock in (distributor, collector):
        sock.settimeout(None)  # reads block until the next task or the end
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    send(distributor, {"type": "hello", "protocol": PROTOCOL, "role": "worker", "name": args.name,
                       "task_type": args.task_type, "threads": 1, "credits": 1 + args.prefetch,
                       **token})
    send(collector, {"type": "hello", "protocol": PROTOCOL, "role": "worker", "name": args.name,
                     **token})
    print(f"worker {args.name}: running (task type {args.task_type})", file=sys.stderr)

    executions = 0
    while True:
        try:
            message = receive(distributor)
        except (ValueError, OSError) as e:  # oversized frame, bad JSON, reset connection
            sys.exit(f"worker {args.name}: bad message from the distributor: {e}")
        if message is None:
            sys.exit(f"worker {args.name}: the distributor closed the connection before the end")
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "task":
            started_ns = time.time_ns()
            data = message.get("data")
            workload = data.get("workload", 0) if isinstance(data, dict) else 0
            time.sleep(max(0.0, float(workload)))
            executions += 1
            try:
                send(collector, {"type": "result", "id": message["id"],
                                 "task_type": message["task_type"], "attempt": message["attempt"],
                                 "worker": args.name, "started_ns": started_ns,
                                 "finished_ns": time.time_ns(), "data": None})
            except OSError as e:
                sys.exit(f"worker {args.name}: lost the collector at {args.collector}: {e}")
            try:
                send(distributor, {"type": "ready", "credits": 1})
            except OSError:
                pass  # the distributor is gone; its "end" may be waiting unread, so read on
        elif kind == "end":
            print(f"worker {args.name}: finished - handled {executions} executions")
            return 0
        elif kind == "refused":
            print(f"worker {args.name}: refused: {message.get('reason')}", file=sys.stderr)
            return 1
        else:
            sys.exit(f"worker {args.name}: unexpected message from the distributor: {message!r}")


if __name__ == "__main__":
    sys.exit(main())
