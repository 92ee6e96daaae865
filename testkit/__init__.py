"""Test support: start the real servers on free 127.0.0.1 ports, talk to them, stop them.

Used by the tests (`tests/`), the benchmarks (`bench/`) and the scripts (`scripts/`: the demo, the fault
suite); it imports none of them.

- `testkit.servers`: any server as a subprocess (`start_server`, `ServerProcess`), free ports, `ServerGroup`
  (stops all it started), `WebhookReceiver`;
- `testkit.devnode`: the development node (`start_devnode`);
- `testkit.relay`: the relay (`start_relay`) and a throw-away `redis-server` (`start_redis`);
- `testkit.nodeodx`: a real NodeODX 2.3.1 in test mode (`start_nodeodx`), built by `make setup`;
- `testkit.cluster`: Redis that survives a restart, relay replicas, a balancer, a client that retries.
"""
