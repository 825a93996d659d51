#!/usr/bin/env python3
"""Failover time of RFC 5626 flows through `pinhole serve` (edge, registrar and
proxy in one process) on loopback. Not run by CI; timing decides nothing.

A phone registers one instance with two flows of the same transport: flow 1
(reg-id 1, registered last, so tried first) and flow 2 (reg-id 2). A caller
sends INVITEs for the phone's AOR. Per trial:

  tcp-reset   flow 1 is a TCP connection. --hold-ms (5) after the INVITE
              reaches it, the phone resets the connection (SO_LINGER 0: an
              RST) and sends nothing else. Measured: the reset -> INVITE on
              flow 2 ("after the connection is known dead": the server sees
              the RST at once on loopback), and caller's INVITE -> INVITE on
              flow 2 (which includes the hold).
  tcp-dead    flow 1 is reset before the INVITE (the server has seen the close
              for --dead-ms): caller's INVITE -> INVITE on flow 2.
  udp-silent  flow 1 is a UDP socket that swallows the INVITE and never
              answers, no 100 either. Measured: caller's INVITE -> INVITE on
              flow 2; expected near [outbound] failover_timeout.

With --trying flow 1 first answers 100 Trying (a phone that took the
INVITE and then lost its connection, or went silent).

With --shape split the registrar and two edge-only processes run apart
(docs/outbound.md): the registrar on 127.0.0.1, edge A on 127.0.0.2 and edge B
on 127.0.0.3, each `pinhole serve` of its own, the edges with [proxy]
registrar and the registrar with the edges in [proxy] trusted. Flow 1
registers through edge A, flow 2 through edge B, the caller sends to the
registrar. The registrar learns that flow 1 failed from edge A's 430 (the
connection closed, or the phone silent for failover_timeout behind the
edge's 100), so the times include edge A's part.

Flow 2 answers 486 (the caller ACKs it), then flow 1 is opened again and
registered again (that clears its failed mark and makes it the most recent),
and the next trial starts. A trial counts as failover only if the INVITE
reached flow 1 first (tcp-reset, udp-silent) or not at all (tcp-dead); an
INVITE forked to both flows at once is reported as such, not as a time.

usage: bench/failover.py [--pinhole PATH] [--mode tcp-reset|tcp-dead|udp-silent|all]
                         [--shape one|split] [--trials N] [--port P]
                         [--set section.key=value ...]
"""
import argparse, os, select, socket, statistics, struct, subprocess, sys, tempfile, time

HOST = "127.0.0.1"
# --shape split: the edges, and the registrar on an address of its own (an
# edge takes whatever comes from the registrar's address for the registrar's)
EDGE_A, EDGE_B, REG_SPLIT = "127.0.0.2", "127.0.0.3", "127.0.0.4"
REG = HOST  # where the caller sends
DOMAIN = HOST  # the AOR's host: the registrar's address, or the split shape's domain
INSTANCE = "urn:uuid:00000000-0000-4000-8000-00000000f00d"


def now_ms():
    return time.monotonic_ns() / 1e6


class Flow:
    """One flow of the phone: a UDP socket or a TCP connection, with framing."""

    def __init__(self, tp, port, src, dst):
        self.tp, self.port, self.buf, self.dst = tp, port, b"", dst
        if tp == "udp":
            self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.s.bind((src, 0))
        else:
            self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.s.bind((src, 0))
            self.s.connect((dst, port))
        self.local = self.s.getsockname()

    def send(self, data):
        if self.tp == "udp":
            self.s.sendto(data, (self.dst, self.port))
        else:
            self.s.sendall(data)

    def messages(self):
        """Whatever whole SIP messages can be read now (non-blocking)."""
        out = []
        try:
            if self.tp == "udp":
                while True:
                    d, _ = self.s.recvfrom(65536, socket.MSG_DONTWAIT)
                    out.append(d)
            else:
                d = self.s.recv(65536, socket.MSG_DONTWAIT)
                if not d:
                    raise ConnectionResetError
                self.buf += d
        except (BlockingIOError, InterruptedError):
            pass
        while self.tp == "tcp":
            self.buf = self.buf.lstrip(b"\r\n")  # keepalive pongs
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buf[: end + 4]
            cl = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith((b"content-length:", b"l:")):
                    cl = int(line.split(b":", 1)[1])
            if len(self.buf) < end + 4 + cl:
                break
            out.append(self.buf[: end + 4 + cl])
            self.buf = self.buf[end + 4 + cl:]
        return out

    def reset(self):
        if self.tp == "tcp":
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()


def header(msg, name):
    for line in msg.split(b"\r\n")[1:]:
        if not line:
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower().encode():
            return v.strip().decode()
    return ""


def register(flow, reg_id, seq, user):
    ip, lp = flow.local
    tp = flow.tp.upper()
    msg = (f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
           f"Via: SIP/2.0/{tp} {ip}:{lp};branch=z9hG4bKfo{reg_id}x{seq}x{time.time_ns()};rport\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag=ph{reg_id}\r\nTo: <sip:{user}@{DOMAIN}>\r\n"
           f"Call-ID: fo-reg-{reg_id}-{os.getpid()}\r\nCSeq: {seq} REGISTER\r\n"
           "Supported: outbound, path\r\n"
           f"Contact: <sip:{user}@{ip}:{lp};transport={flow.tp};ob>;+sip.instance=\"<{INSTANCE}>\";reg-id={reg_id}\r\n"
           "Expires: 600\r\nContent-Length: 0\r\n\r\n").encode()
    flow.send(msg)
    deadline = time.time() + 3
    while time.time() < deadline:
        select.select([flow.s], [], [], 0.1)
        for m in flow.messages():
            if m.startswith(b"SIP/2.0 ") and b"REGISTER" in header(m, "CSeq").encode():
                if m.startswith(b"SIP/2.0 200"):
                    return m
                first = m.split(b"\r\n")[0].decode()
                raise RuntimeError(f"REGISTER reg-id {reg_id}: {first}")
    raise RuntimeError(f"REGISTER reg-id {reg_id}: no answer")


def answer(flow, req, code, reason):
    """A response to req, sent back over flow (Via/From/To/Call-ID/CSeq copied)."""
    lines = [f"SIP/2.0 {code} {reason}"]
    for line in req.split(b"\r\n")[1:]:
        if not line:
            break
        k = line.split(b":", 1)[0].strip().lower()
        if k in (b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq", b"record-route"):
            lines.append(line.decode())
        elif k in (b"to", b"t"):
            lines.append(line.decode() + ";tag=callee")
    flow.send(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())


def run(args, mode, port):
    tp = "tcp" if mode.startswith("tcp") else "udp"
    user = f"fo{mode.replace('-', '')}"
    src = "127.0.0.1"
    via1, via2 = (EDGE_A, EDGE_B) if args.shape == "split" else (REG, REG)
    f2 = Flow(tp, port, src, via2)
    register(f2, 2, 1, user)
    f1 = Flow(tp, port, src, via1)
    register(f1, 1, 1, user)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind((HOST, 0))
    cport = caller.getsockname()[1]
    results = []
    for trial in range(1, args.trials + 1):
        if mode == "tcp-dead":
            f1.reset()
            f1_dead_at = now_ms()
            time.sleep(args.dead_ms / 1000)
        branch = f"z9hG4bKfoc{trial}x{time.time_ns()}"
        callid = f"fo-call-{mode}-{trial}-{os.getpid()}"
        inv = (f"INVITE sip:{user}@{DOMAIN} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {HOST}:{cport};branch={branch};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:caller@{HOST}>;tag=cl{trial}\r\nTo: <sip:{user}@{DOMAIN}>\r\n"
               f"Call-ID: {callid}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{HOST}:{cport}>\r\n"
               "Content-Length: 0\r\n\r\n").encode()
        t_inv = now_ms()
        caller.sendto(inv, (REG, port))
        t1 = t_rst = t2 = None
        final = None
        deadline = time.time() + args.timeout
        f1_open = mode != "tcp-dead"
        reset_due = None
        while time.time() < deadline and final is None:
            socks = [caller, f2.s] + ([f1.s] if f1_open else [])
            r, _, _ = select.select(socks, [], [], 0.0005 if reset_due else 0.05)
            if reset_due is not None and now_ms() >= reset_due:
                f1.reset()
                t_rst = now_ms()
                f1_open = False
                reset_due = None
                continue
            if f1_open and f1.s in r:
                try:
                    msgs = f1.messages()
                except (ConnectionResetError, OSError):
                    msgs, f1_open = [], False
                for m in msgs:
                    if m.startswith(b"INVITE ") and callid in header(m, "Call-ID") and t1 is None:
                        t1 = now_ms()
                        if args.trying:
                            answer(f1, m, 100, "Trying")
                        if mode == "tcp-reset":
                            reset_due = t1 + args.hold_ms
                        # udp-silent: swallowed, never answered
            if f2.s in r:
                for m in f2.messages():
                    if m.startswith(b"INVITE ") and callid in header(m, "Call-ID"):
                        if t2 is None:
                            t2 = now_ms()
                        answer(f2, m, 486, "Busy Here")
                    # ACK from the proxy for the 486: nothing to do
            if caller in r:
                d, _ = caller.recvfrom(65536)
                if d.startswith(b"SIP/2.0 ") and not d.startswith(b"SIP/2.0 1") and callid in header(d, "Call-ID"):
                    final = d.split(b"\r\n")[0].decode()
                    to = header(d, "To")
                    ack = (f"ACK sip:{user}@{DOMAIN} SIP/2.0\r\n"
                           f"Via: SIP/2.0/UDP {HOST}:{cport};branch={branch};rport\r\n"
                           f"Max-Forwards: 70\r\nFrom: <sip:caller@{HOST}>;tag=cl{trial}\r\nTo: {to}\r\n"
                           f"Call-ID: {callid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").encode()
                    caller.sendto(ack, (REG, port))
        res = {"trial": trial, "final": final or "none",
               "flow1": None if t1 is None else t1 - t_inv,
               "flow2": None if t2 is None else t2 - t_inv,
               "after_reset": None if (t2 is None or t_rst is None) else t2 - t_rst}
        if t2 is None:
            res["verdict"] = "no INVITE on flow 2"
        elif mode == "tcp-dead":
            res["verdict"] = "failover" if t1 is None else "INVITE on the dead flow too"
        elif t1 is None:
            res["verdict"] = "flow 1 skipped (not tried first)"
        elif t2 < t1 or (t_rst is not None and t2 < t_rst) or (mode == "udp-silent" and t2 - t1 < 5):
            res["verdict"] = "forked to both at once"
        else:
            res["verdict"] = "failover"
        results.append(res)
        fmt = lambda x: "-" if x is None else f"{x:.2f} ms"
        print(f"{mode} trial {trial}: INVITE on flow 1 {fmt(res['flow1'])}, on flow 2 {fmt(res['flow2'])}"
              + (f" ({fmt(res['after_reset'])} after the reset)" if mode == "tcp-reset" else "")
              + f"; caller got {res['final']}; {res['verdict']}", flush=True)
        # flow 1 back, registered anew: the most recent flow again, not failed
        if f1_open:
            f1.reset()
        f1 = Flow(tp, port, src, via1)
        register(f1, 1, trial + 1, user)
        time.sleep(args.pause_ms / 1000)
    return results


def summary(mode, results):
    ok = [r for r in results if r["verdict"] == "failover"]
    line = f"{mode}: {len(ok)} of {len(results)} trials failed over"
    if ok:
        v = sorted(r["flow2"] for r in ok)
        line += (f"; caller's INVITE -> INVITE on flow 2: median {statistics.median(v):.2f} ms, "
                 f"min {v[0]:.2f}, max {v[-1]:.2f}")
        if mode == "tcp-reset":
            a = sorted(r["after_reset"] for r in ok)
            line += f"; reset -> INVITE on flow 2: median {statistics.median(a):.2f} ms, max {a[-1]:.2f}"
    others = {}
    for r in results:
        if r["verdict"] != "failover":
            others[r["verdict"]] = others.get(r["verdict"], 0) + 1
    if others:
        line += "; " + ", ".join(f"{k}: {n}" for k, n in others.items())
    return line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pinhole", default="./build/pinhole")
    ap.add_argument("--mode", default="all", choices=["tcp-reset", "tcp-dead", "udp-silent", "all"])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--port", type=int, default=15280)
    ap.add_argument("--dead-ms", type=int, default=200, help="tcp-dead: how long before the INVITE flow 1 is reset")
    ap.add_argument("--pause-ms", type=int, default=200, help="between trials")
    ap.add_argument("--hold-ms", type=float, default=5.0,
                    help="tcp-reset: how long flow 1 holds the INVITE before the reset (an INVITE on flow 2 before it is a parallel fork, not a failover)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a trial may take")
    ap.add_argument("--trying", action="store_true",
                    help="flow 1 answers 100 Trying before it goes silent or is reset")
    ap.add_argument("--set", action="append", default=[], help="section.key=value for the server(s)")
    ap.add_argument("--shape", default="one", choices=["one", "split"],
                    help="one process, or a registrar and two edge-only processes")
    a = ap.parse_args()
    global DOMAIN, REG
    confs = []
    if a.shape == "one":
        confs.append(f"[sip]\nlisten = udp:{HOST}:{a.port}, tcp:{HOST}:{a.port}\nworkers = 2\n"
                     "[store]\npath =\n[registrar]\nopen = yes\n[log]\nlevel = warn\n")
    else:
        DOMAIN, REG = "fo.test", REG_SPLIT
        common = f"domains = {DOMAIN}\nworkers = 2\n"
        confs.append(f"[sip]\nlisten = udp:{REG}:{a.port}, tcp:{REG}:{a.port}\n{common}"
                     f"[proxy]\ntrusted = {EDGE_A}, {EDGE_B}\n"
                     "[store]\npath =\n[registrar]\nopen = yes\n[log]\nlevel = warn\n")
        for e in (EDGE_A, EDGE_B):
            confs.append(f"[sip]\nlisten = udp:{e}:{a.port}, tcp:{e}:{a.port}\n{common}"
                         f"[proxy]\nregistrar = udp:{REG}:{a.port}\n"
                         "[store]\npath =\n[log]\nlevel = warn\n")
    srvs, names = [], []
    for i, text in enumerate(confs):
        conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        conf.write(text)
        conf.close()
        names.append(conf.name)
        cmd = [a.pinhole, "serve", "--config", conf.name]
        for s in a.set:
            cmd += ["--set", s]
        log = open(conf.name + ".log", "w")
        srvs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    lines = []
    try:
        time.sleep(1.0)
        for srv, name in zip(srvs, names):
            if srv.poll() is not None:
                sys.exit(f"a server did not start: {name}.log")
        modes = ["tcp-reset", "tcp-dead", "udp-silent"] if a.mode == "all" else [a.mode]
        for m in modes:
            lines.append(summary(m, run(a, m, a.port)))
    finally:
        for srv in srvs:
            srv.terminate()
            srv.wait()
        for name in names:
            os.unlink(name)
    print("\n" + "\n".join(lines) + f"\n(server logs: {' '.join(n + '.log' for n in names)}; "
          f"shape {a.shape}; settings: {' '.join(a.set) or 'defaults'})")


if __name__ == "__main__":
    main()
