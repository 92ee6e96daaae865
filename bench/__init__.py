"""The relay's benchmark (`python -m bench`, `make bench`): the relay against a single node, side by side.

Nine measurements, each judged by a ratio or a count, never by an absolute time, so the verdict holds
on a slow or busy machine:

1. `cycle`     — init, upload 3 photos, commit, wait, download all.zip: relay vs direct, ratio of medians;
2. `upload`    — a large streamed upload: throughput ratio, and the relay's peak RSS;
3. `info`      — `/task/{uuid}/info` under 50 concurrent clients: requests/s and p99, relay vs direct;
4. `stalls`    — many streamed (chunked) multipart uploads through the relay: how many took over 5 s;
5. `placement` — a discrete-event simulation driving `proxy.scheduler.place` itself against two
   baseline policies (ClusterODX-like and WebODM-like, in `bench.baselines`);
6. `control`   — 50,000 stored tasks and an offline node: `/info` sampled every 50 ms, `/task/list` pages;
7. `concurrent` — 200 uploads in flight at once: the relay's peak RSS (forwarding, and staging only);
8. `parts`     — one upload of 1,000 to 10,000 parts with limits set: time per part stays flat;
9. `client`    — our client (`shared.Node`) against pyodx, each in its own process: upload and download time
   and peak RSS, to a real NodeODX and through a relay.

Real servers (development nodes and relays) run on 127.0.0.1 as subprocesses and are always stopped.
"""
