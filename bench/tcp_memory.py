#!/usr/bin/env python3
"""Memory per TCP connection of a running `pinhole serve`: opens N connections
from many loopback sources, has each send one request (and read its answer, or
leave a part of a large message pending), and prints the server's RSS growth
per connection. Not run by CI.

usage: bench/tcp_memory.py [--pinhole PATH] [--conns N] [--mode idle|partial]
"""
import argparse, os, resource, socket, subprocess, sys, tempfile, time

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def request(i, port, size):
    pad = "X-Pad: " + "p" * 100 + "\r\n"
    hdrs = ("OPTIONS sip:mem@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKmem{i}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:m@127.0.0.1>;tag=m\r\nTo: <sip:mem@127.0.0.1>\r\n"
            f"Call-ID: mem-{i}\r\nCSeq: 1 OPTIONS\r\n")
    while len(hdrs) < size:
        hdrs += pad
    return (hdrs + "Content-Length: 0\r\n\r\n").encode()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pinhole", default="./build/pinhole")
    ap.add_argument("--conns", type=int, default=4000)
    ap.add_argument("--mode", choices=["idle", "partial"], default="idle")
    ap.add_argument("--port", type=int, default=25070)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, a.conns + 1000), max(hard, a.conns + 1000)))
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write(f"[sip]\nlisten = tcp:127.0.0.1:{a.port}\nworkers = 2\ntcp_max_connections = {a.conns + 100}\n"
               "[store]\npath =\n")
    conf.close()
    srv = subprocess.Popen([a.pinhole, "serve", "--config", conf.name],
                           stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        base = rss_kb(srv.pid)
        socks = []
        for i in range(a.conns):
            s = socket.socket()
            s.bind((f"127.0.{1 + i // 100 // 250}.{1 + (i // 100) % 250}", 0))  # 100 per source
            s.connect(("127.0.0.1", a.port))
            if a.mode == "idle":
                s.sendall(request(i, a.port, 600))
            else:  # all of a 60 KB request but its last bytes: the server must keep it
                s.sendall(request(i, a.port, 60000)[:-2])
            socks.append(s)
        if a.mode == "idle":
            for s in socks:
                s.settimeout(5)
                s.recv(65536)
        time.sleep(1.5)
        after = rss_kb(srv.pid)
        alive = srv.poll() is None
        print(f"{a.pinhole} mode={a.mode} conns={a.conns}: RSS {base} -> {after} KiB, "
              f"{(after - base) * 1024 / a.conns:.0f} bytes per connection"
              + ("" if alive else " (server died)"))
        for s in socks:
            s.close()
    finally:
        srv.terminate()
        srv.wait()
        os.unlink(conf.name)

if __name__ == "__main__":
    main()
