"""The reference approach: one EasyTier instance per monitored target.

Reads {"targets": [{"url", "network_name", "network_secret", "hostname"}]}
on stdin, starts one easytier-pyo3 Node per target in this process (as the
original prober does), and waits until each has a route to its target's
hostname: the reference's "healthy" verdict. Prints one JSON line with the
time to the first and to the last verdict and the process's peak RSS.
"""
import json
import resource
import sys
import time

from easytier_pyo3 import Node


def main():
    cfg = json.load(sys.stdin)
    start = time.monotonic()
    nodes = []
    for i, t in enumerate(cfg["targets"]):
        conf = {
            "hostname": f"ref-prober-{i}",
            "instance_name": f"ref-{i}",
            "listeners": [],
            "network_identity": {"network_name": t["network_name"], "network_secret": t["network_secret"]},
            "flags": {"no_tun": True, "disable_p2p": True, "disable_udp_hole_punching": True,
                      "disable_tcp_hole_punching": True, "disable_upnp": True, "enable_ipv6": False,
                      "bind_device": False},
            "stun_servers": ["127.0.0.1:9"], "stun_servers_v6": ["[::1]:9"],
            "peer": [{"uri": t["url"]}],
        }
        n = Node(conf)
        n.start()
        nodes.append((n, t["hostname"]))
    healthy = {}
    deadline = start + cfg.get("timeout", 60)
    while len(healthy) < len(nodes) and time.monotonic() < deadline:
        for i, (n, host) in enumerate(nodes):
            if i in healthy:
                continue
            for r in n.routes():
                if r.get("hostname") == host:
                    healthy[i] = time.monotonic() - start
                    break
        time.sleep(0.01)
    times = sorted(healthy.values())
    out = {
        "healthy": len(healthy),
        "first_s": times[0] if times else None,
        "all_s": times[-1] if len(times) == len(nodes) else None,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    for n, _ in nodes:
        n.stop()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
