#!/usr/bin/env python3
# A user's own system for `plumbline capacity --spawn` (README: "Capacity of your own system"):
# one Redis consumer-group member (redis-py: pip install redis) that reads the stream named by
# PLUMBLINE_IN, sleeps PLUMBLINE_PER_ITEM seconds per message (default 0.01), writes the
# message's bytes unchanged to the stream named by PLUMBLINE_OUT (so plumbline's frame header,
# its sequence number and intended send time, comes back for the latency and loss checks),
# and acks a batch (up to 10) only once its results are written. plumbline starts one copy per
# worker and stops it with SIGTERM.
import os, time, urllib.parse
import redis


def stream(url):
    u = urllib.parse.urlparse(url)
    return redis.Redis(host=u.hostname, port=u.port, username=u.username, password=u.password), u.path[1:]


r, source = stream(os.environ["PLUMBLINE_IN"])
out, sink = stream(os.environ["PLUMBLINE_OUT"])
me, per_item = "py" + os.environ.get("PLUMBLINE_WORKER_INDEX", "0"), float(os.environ.get("PLUMBLINE_PER_ITEM", "0.01"))
try:
    r.xgroup_create(source, "plumbline", id="0", mkstream=True)
except redis.ResponseError as e:  # BUSYGROUP: another copy created it first
    if "BUSYGROUP" not in str(e):
        raise
while True:
    for _, entries in r.xreadgroup("plumbline", me, {source: ">"}, count=10, block=100) or []:
        results = out.pipeline(transaction=False)
        for _, fields in entries:
            time.sleep(per_item)
            results.xadd(sink, {b"d": fields[b"d"]})
        results.execute()  # the batch's results first: acked only once written
        r.xack(source, "plumbline", *[entry for entry, _ in entries])
