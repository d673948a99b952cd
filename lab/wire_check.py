#!/usr/bin/env python3
"""Privacy check on captures of a call (pcap, Ethernet): no peer ID, contact name, ticket or
host candidate may appear in any UDP payload, and the rendezvous values stored on the DHT must
look like ciphertext.

usage: wire_check.py [--lan] A.pcap B.pcap ALICE_PEER_ID BOB_PEER_ID NAME... IP...
(an argument that parses as an IPv4 address is checked as 4 raw bytes and as text)
--lan: a capture on a LAN with no DHT: instead of DHT values, mDNS announcements of the
service must be present (and, like everything else, name nobody), and so must a goodbye (an
answer of the service with TTL 0, sent when `listen` stops)."""
import ipaddress
import math
import re
import struct
import sys

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
TICKET = re.compile(rb"est1[" + CHARSET.encode() + rb"]{20}")


def bech32_payload(s):
    """The data bytes of a bech32/bech32m string (checksum not verified: we only search)."""
    data = s[s.rfind("1") + 1:-6]
    acc, bits, out = 0, 0, bytearray()
    for c in data:
        acc = (acc << 5) | CHARSET.index(c)
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def udp_payloads(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    (linktype,) = struct.unpack(endian + "I", data[20:24])
    assert linktype == 1, f"expected Ethernet captures, got linktype {linktype}"
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(pkt) < 14 + 20:
            continue
        ip = pkt[14:]
        if pkt[12:14] == b"\x08\x00":  # IPv4
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] == 17:
                yield ip[ihl + 8:]
        elif pkt[12:14] == b"\x86\xdd" and len(ip) >= 48:  # IPv6 (no extension headers)
            if ip[6] == 17:
                yield ip[40 + 8:]


def dns_name_end(p, i):
    """Index just past the (possibly compressed) DNS name starting at i."""
    while i < len(p):
        n = p[i]
        if n == 0:
            return i + 1
        if n >= 0xC0:
            return i + 2
        i += 1 + n
    raise ValueError("name runs past the packet")


def is_goodbye(p):
    """True for an mDNS response whose answers include a record with TTL 0."""
    if len(p) < 12 or not p[2] & 0x80:
        return False
    qd, an = struct.unpack(">HH", p[4:8])
    try:
        i = 12
        for _ in range(qd):
            i = dns_name_end(p, i) + 4
        for _ in range(an):
            i = dns_name_end(p, i)
            _, _, ttl, rdlen = struct.unpack(">HHIH", p[i:i + 10])
            if ttl == 0:
                return True
            i += 10 + rdlen
    except (ValueError, struct.error):
        return False
    return False


def entropy(b):
    counts = [0] * 256
    for x in b:
        counts[x] += 1
    return -sum(c / len(b) * math.log2(c / len(b)) for c in counts if c)


def main():
    args = sys.argv[1:]
    lan = args[:1] == ["--lan"]
    if lan:
        args = args[1:]
    pcaps, ids, rest = args[0:2], args[2:4], args[4:]
    needles = {}
    for pid in ids:
        needles[f"peer ID {pid[:12]}… (text)"] = pid.encode()
        needles[f"peer ID {pid[:12]}… (raw key)"] = bech32_payload(pid)[:32]
    for word in rest:
        try:
            ip = ipaddress.IPv4Address(word)
            needles[f"candidate {word} (raw)"] = ip.packed
            needles[f"candidate {word} (text)"] = word.encode()
        except ValueError:
            needles[f"name {word!r}"] = word.encode()
            needles[f"name {word.capitalize()!r}"] = word.capitalize().encode()
    packets = values = announcements = goodbyes = 0
    failures = []
    captured = [p for path in pcaps for p in udp_payloads(path)]
    # A needle must be long enough that ciphertext does not hold it by chance: a 3-letter name
    # matched case-insensitively is in roughly one capture of a call in ten. Refuse needles
    # whose expected number of chance matches in this capture exceeds 1 in 1,000.
    positions = sum(len(p) for p in captured)
    for what, needle in needles.items():
        variants = 2 ** sum(c.isalpha() for c in needle.decode("latin-1")) if needle.isascii() else 1
        chance = positions * variants / 256 ** len(needle)
        if chance > 1e-3:
            sys.exit(f"wire check: {what} is too short to search for in {positions} bytes "
                     f"(expected chance matches {chance:.2g}); use a longer name")
    for path in pcaps:
        for payload in udp_payloads(path):
            packets += 1
            low = payload.lower()
            # A ticket in clear: its prefix and at least 20 bech32 characters.
            if TICKET.search(low):
                failures.append(f"{path}: a ticket in a {len(payload)}-byte packet")
            for what, needle in needles.items():
                if needle in payload or (needle.isascii() and needle.lower() in low):
                    failures.append(f"{path}: {what} in a {len(payload)}-byte packet")
            if b"_extrasafe" in payload:
                announcements += 1
                if is_goodbye(payload):
                    goodbyes += 1
            at = payload.find(b"1:v360:")
            while at >= 0:
                value = payload[at + 7:at + 7 + 360]
                values += 1
                if len(value) == 360 and entropy(value) < 7.0:
                    failures.append(f"{path}: a stored DHT value looks like plaintext "
                                    f"(entropy {entropy(value):.2f} bits/byte)")
                at = payload.find(b"1:v360:", at + 1)
    print(f"wire check: {packets} UDP packets, {values} DHT record values, "
          f"{announcements} mDNS packets of the service ({goodbyes} goodbyes), "
          f"{len(needles)} things that must not appear")
    if packets == 0 or (values == 0 and not lan) or (announcements == 0 and lan):
        failures.append("the capture holds no call, or no DHT record / announcement: "
                        "nothing was checked")
    if lan and goodbyes == 0:
        failures.append("no mDNS goodbye: the announcement was not withdrawn when listen stopped")
    for f in failures[:20]:
        print("  LEAK:", f)
    if failures:
        sys.exit(1)
    print("wire check: nothing identifying in clear" +
          ("; mDNS announcements name nobody and were withdrawn" if lan
           else "; DHT values are ciphertext"))


if __name__ == "__main__":
    main()
