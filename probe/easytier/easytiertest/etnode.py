"""Run one real EasyTier node (PyPI easytier-pyo3) for the Go tests.

Reads a JSON config on the first stdin line, starts the node on loopback,
prints one JSON line {"peer_id", "version", "listeners", "hostname"}, then
answers one JSON line per command line: peers, routes, summary, foreign,
finfos, alive, heap, stop. Everything stays on loopback: STUN servers point at a closed
loopback port and UPnP, hole punching and P2P are off.
"""
import ctypes
import json
import sys
import time

from easytier_pyo3 import Node, version


def secure_mode_keys():
    """A fresh X25519 key pair, as secure mode requires both halves."""
    import base64
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    raw = ser.Encoding.Raw
    priv = key.private_bytes(raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    pub = key.public_key().public_bytes(raw, ser.PublicFormat.Raw)
    return {
        "enabled": True,
        "local_private_key": base64.b64encode(priv).decode(),
        "local_public_key": base64.b64encode(pub).decode(),
    }


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap():
    """The process's live C heap from glibc's mallinfo2 (all arenas).

    The node is Rust code inside this process and allocates with glibc's
    malloc, so these are the bytes the node (and Python) hold, without
    the freed memory an arena keeps: resident size mixes both.
    """
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return {
        "in_use": m.uordblks + m.hblkhd,
        "arena": m.arena,
        "mmapped": m.hblkhd,
        "free": m.fordblks,
    }


def main():
    cfg = json.loads(sys.stdin.readline())
    port = cfg["port"]
    host = cfg.get("host", "127.0.0.1")
    listeners = [
        f"tcp://{host}:{port}",
        f"udp://{host}:{port}",
        f"ws://{host}:{port + 1}",
        f"wss://{host}:{port + 2}",
    ]
    flags = {
        "no_tun": True,
        "disable_p2p": True,
        "disable_udp_hole_punching": True,
        "disable_tcp_hole_punching": True,
        "disable_sym_hole_punching": True,
        "disable_upnp": True,
        "enable_ipv6": False,
        # Without this the node binds outgoing sockets to its interface
        # address and cannot dial other nodes on loopback.
        "bind_device": False,
    }
    flags.update(cfg.get("flags", {}))
    conf = {
        "hostname": cfg.get("hostname", "conformance-node"),
        "instance_name": cfg.get("instance_name", "conformance"),
        "listeners": listeners,
        "network_identity": {
            "network_name": cfg["network_name"],
            "network_secret": cfg.get("network_secret", ""),
        },
        "flags": flags,
        # A closed loopback port: the node must never reach public STUN servers.
        "stun_servers": ["127.0.0.1:9"],
        "stun_servers_v6": ["[::1]:9"],
    }
    if cfg.get("peers"):
        conf["peer"] = [{"uri": u} for u in cfg["peers"]]
    if cfg.get("secure_mode"):
        conf["secure_mode"] = secure_mode_keys()
    node = Node(conf)
    node.start()
    out = {
        "peer_id": node.peer_id(),
        "version": version(),
        "listeners": node.running_listeners(),
        "hostname": conf["hostname"],
    }
    print(json.dumps(out), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        try:
            if cmd == "peers":
                res = node.peers()
            elif cmd == "routes":
                res = node.routes()
            elif cmd == "summary":
                res = node.foreign_network_route_summary()
            elif cmd == "finfos":
                res = node.foreign_network_route_infos()
            elif cmd == "foreign":
                res = node.foreign_networks(False)
            elif cmd == "heap":
                res = heap()
            elif cmd == "alive":
                res = {"state": node.state(), "error": node.latest_error()}
            elif cmd == "stop":
                node.stop()
                print(json.dumps({"stopped": True}), flush=True)
                return
            else:
                res = {"error": "unknown command " + cmd}
        except Exception as e:  # report, keep serving
            res = {"error": repr(e)}
        print(json.dumps(res, default=str), flush=True)
    node.stop()


if __name__ == "__main__":
    main()
    time.sleep(0.1)
