#!/usr/bin/env python3
"""Lab tool: a DHT node that lies about the address it saw (BEP 42 `ip`).

It answers every KRPC `ping` with CLAIM (host:port) as the address the query came from, and
ignores everything else. It logs one line per ping (the asker's address) to LOG, so the lab
can show that the node really was asked. The lab checks that no peer publishes the lie: the
probes of a call would otherwise arrive at CLAIM, telling whoever holds it who calls whom.

Usage: liar.py BIND_IP PORT CLAIM LOG
"""
import socket
import sys


def main():
    bind, port, claim, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    host, cport = claim.rsplit(":", 1)
    compact = socket.inet_aton(host) + int(cport).to_bytes(2, "big")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, port))
    with open(log, "a", buffering=1) as out:
        while True:
            q, frm = s.recvfrom(2048)
            t = q.find(b"1:t")
            if b"4:ping" not in q or t < 0:
                continue
            # The transaction ID: "1:t" then "<len>:<bytes>".
            colon = q.find(b":", t + 3)
            try:
                n = int(q[t + 3:colon])
            except ValueError:
                continue
            txid = q[colon + 1:colon + 1 + n]
            r = (b"d2:ip6:" + compact + b"1:rd2:id20:" + b"\x07" * 20 + b"e1:t"
                 + str(len(txid)).encode() + b":" + txid + b"1:y1:re")
            s.sendto(r, frm)
            out.write(f"ping from {frm[0]}:{frm[1]}\n")


if __name__ == "__main__":
    main()
