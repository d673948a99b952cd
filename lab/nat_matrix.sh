#!/usr/bin/env bash
# NAT lab: two peers behind two NAT routers and a private DHT in a "public" namespace; for each
# pair of NAT behaviours, Bob listens, Alice calls him by contact name (no address known), and
# the cell records success, time to connect and UDP packets sent. Everything lives in network
# namespaces this script creates and deletes (also on failure); nothing touches the host's
# network. Needs root, iproute2, iptables (xt_recent, conntrack) and, for the privacy check,
# tcpdump.
#
#   bash lab/nat_matrix.sh            # the whole matrix (a few minutes), then the privacy check
#   CELLS="port:port sym:sym" bash lab/nat_matrix.sh   # CELLS="" runs none of the matrix
#   NO_INPUT_DROP=1 ...               # routers without the "drop inbound to the router" rule
#   SKIP_DESKTOP=1 / SKIP_IDLE / SKIP_OUTAGE / SKIP_RENUMBER / SKIP_LIAR / SKIP_LAN / SKIP_CAPTURE  # leave out a part
#   OUTAGES="30 60"                   # the blackouts of the outage cell, in seconds
#
# Topology (documentation address ranges, except where noted):
#   peer-a 10.0.1.2 -- nat-a [10.0.1.1 | 198.51.100.2] --+
#                                                         pub router -- dht 192.N.2.2, N = 0..7
#                                                                        (8 nodes, 8 networks)
#   peer-b 10.0.2.2 -- nat-b [10.0.2.1 | 203.0.113.2] ---+
# A router that forwards ports (types map, upnp: miniupnpd) has 11.0.1.2 or 11.0.2.2 outside:
# miniupnpd refuses to serve behind documentation or private ranges (it takes them for a NAT
# behind another NAT). Those addresses exist only inside the lab's namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${EXTRASAFE_BIN:-target/debug/extrasafe}
DHTNET=${DHTNET_BIN:-target/debug/dhtnet}
DESKTOP=${DESKTOP_BIN:-target/debug/extrasafe-desktop}
OUT=${LAB_OUT:-target/lab}
# What the peers log (to files, shown when a cell fails): when intents were written and read,
# records stored, and punches, so that a failure says which side stopped where.
LOGS="warn,extrasafe_net::dht=debug,extrasafe_net::punch=debug"
mkdir -p "$OUT"
P="es$$"   # namespace prefix, unique per run
NS=()
PIDS=()

# Every background process is started as `cmd <in >out & PIDS+=($!)`: `jobs -p` inside a
# command substitution sees no jobs, and redirections on a shell function would be opened by
# this shell (a FIFO would block it), so processes are tracked by hand.

cleanup() {
  set +e
  # A backgrounded shell function is a subshell: its command is a child of the PID we hold.
  for pid in "${PIDS[@]}"; do pkill -P "$pid" 2>/dev/null; kill "$pid" 2>/dev/null; done
  for _ in $(seq 20); do
    local alive=0
    for pid in "${PIDS[@]}"; do
      { kill -0 "$pid" || pgrep -P "$pid"; } >/dev/null 2>&1 && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    pkill -9 -P "$pid" 2>/dev/null; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  PIDS=()
  for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  NS=()
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# forget PID: a process already waited for (its PID may be reused by anything else).
forget() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }

ns() { ip netns exec "$P-$1" "${@:2}"; }
mkns() { ip netns add "$P-$1"; NS+=("$P-$1"); ns "$1" ip link set lo up; }
# link NS1 IF1 ADDR1 NS2 IF2 ADDR2 (/24 each)
link() {
  ip link add "$2" netns "$P-$1" type veth peer name "$5" netns "$P-$4"
  ns "$1" ip addr add "$3/24" dev "$2"; ns "$1" ip link set "$2" up
  ns "$4" ip addr add "$6/24" dev "$5"; ns "$4" ip link set "$5" up
}

# portmapd NAME TYPE: miniupnpd on router NAME (a symmetric NAT otherwise): UPnP IGD, and for
# type map also NAT-PMP and PCP. Its nftables chains live in a table of their own.
portmapd() {
  local r=$1 type=$2 conf="$OUT/$1.miniupnpd.conf"
  ns "$r" nft -f - <<'NFT'
table inet filter {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
NFT
  cat >"$conf" <<CONF
ext_ifname=wan
listening_ip=lan
http_port=0
enable_natpmp=$([ "$type" = map ] && echo yes || echo no)
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=3e2a5c1e-0000-4000-8000-00000000000$([ "$r" = nata ] && echo 1 || echo 2)
allow 1024-65535 10.0.0.0/8 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF
  ns "$r" miniupnpd -f "$conf" -d -P "$OUT/$r.miniupnpd.pid" >"$OUT/$r.miniupnpd.log" 2>&1 &
  PIDS+=($!)
}

# router NAME TYPE PEER_IP: firewall and NAT of one home router.
router() {
  local r=$1 type=$2 peer=$3
  ns "$r" sysctl -qw net.ipv4.ip_forward=1
  if [ "$type" = none ]; then return; fi
  ns "$r" iptables -P FORWARD DROP
  ns "$r" iptables -A FORWARD -i lan -o wan -j ACCEPT
  ns "$r" iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED,DNAT -j ACCEPT
  ns "$r" iptables -A INPUT -i lo -j ACCEPT
  ns "$r" iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  ns "$r" iptables -A INPUT -i lan -j ACCEPT
  # Without this, an early inbound probe makes a conntrack entry on the router that clashes
  # with the outbound mapping, and the NAT picks another port (see the lab recipes).
  [ -n "${NO_INPUT_DROP:-}" ] || ns "$r" iptables -A INPUT -i wan -j DROP
  case $type in
    port) ns "$r" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE ;;
    sym) ns "$r" iptables -t nat -A POSTROUTING -o wan -p udp -j MASQUERADE --random ;;
    map|upnp)
      ns "$r" iptables -t nat -A POSTROUTING -o wan -p udp -j MASQUERADE --random
      portmapd "$r" "$type" ;;
    change) ns "$r" iptables -t nat -A POSTROUTING -o wan -p udp -j MASQUERADE --to-ports 20000-29999 ;;
    full)
      ns "$r" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
      ns "$r" iptables -t nat -A PREROUTING -i wan -p udp -j DNAT --to-destination "$peer" ;;
    addr)
      ns "$r" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
      ns "$r" iptables -t mangle -A POSTROUTING -o wan -m recent --name out --set --rdest
      ns "$r" iptables -t nat -A PREROUTING -i wan -p udp -m recent --name out --rcheck --rsource \
        -j DNAT --to-destination "$peer" ;;
    *) echo "unknown NAT type $type"; exit 2 ;;
  esac
}

topology() {
  local ta=$1 tb=$2 wa=198.51.100 wb=203.0.113
  case $ta in map|upnp) wa=11.0.1 ;; esac
  case $tb in map|upnp) wb=11.0.2 ;; esac
  for n in pub nata natb a b dht; do mkns "$n"; done
  link pub pa "$wa.1" nata wan "$wa.2"
  link pub pb "$wb.1" natb wan "$wb.2"
  link pub pd 192.0.2.1 dht eth0 192.0.2.2
  # DHT nodes in eight /16s (a peer counts one vote per /16 for its public address), a lying
  # node in a ninth and the address it names in a tenth (the `liar` cell).
  for i in 1 2 3 4 5 6 7 8 9; do ns dht ip addr add "192.$i.2.2/24" dev eth0; done
  ns dht ip addr add 192.9.2.77/24 dev eth0
  ns pub ip route add 192.0.0.0/12 via 192.0.2.2
  link nata lan 10.0.1.1 a eth0 10.0.1.2
  link natb lan 10.0.2.1 b eth0 10.0.2.2
  ns pub sysctl -qw net.ipv4.ip_forward=1
  # Without NAT, the peer's own address is routed as a public one.
  ns pub ip route add 10.0.1.0/24 via "$wa.2"
  ns pub ip route add 10.0.2.0/24 via "$wb.2"
  ns nata ip route add default via "$wa.1"
  ns natb ip route add default via "$wb.1"
  ns dht ip route add default via 192.0.2.1
  ns a ip route add default via 10.0.1.1
  ns b ip route add default via 10.0.2.1
  router nata "$ta" 10.0.1.2
  router natb "$tb" 10.0.2.2
}

udp_out() { ns "$1" awk '/^Udp:/ && $2 ~ /^[0-9]+$/ {print $5}' /proc/net/snmp; }

# A JSON event's field from a log: event FIELD FILE
field() { grep -m1 "\"event\":\"$1\"" "$3" | sed -E "s/.*\"$2\":\"?([^\",}]*).*/\1/"; }

ms() { date +%s%3N; }

# until_connected LOG PID TICKS: wait (TICKS x 50 ms at most) for the caller's `connected`
# event, or for it to exit.
until_connected() {
  for _ in $(seq "$3"); do
    grep -q '"event":"connected"' "$1" && return
    kill -0 "$2" 2>/dev/null || return
    sleep 0.05
  done
}

# last_received LOG: the audio datagrams received by the latest stats line of LOG.
last_received() { grep '"event":"stats"' "$1" | tail -n1 | sed -E 's/.*"received":([0-9]+).*/\1/'; }
# last_shown LOG: the video pictures shown by the latest video stats line of LOG (0 before any).
last_shown() { { grep '"event":"video_stats"' "$1" || true; } | tail -n1 | sed -E 's/.*"shown":([0-9]+).*/\1/;s/^$/0/'; }

# chat_both_ways LOG A_SAYS B_SAYS: Alice (stdin on fd 8) and Bob (fd 7) each send a line;
# true once each arrived on the other side (within 5 s).
chat_both_ways() {
  local log=$1 a=$2 b=$3
  echo "$a" >&8
  echo "$b" >&7
  for _ in $(seq 100); do
    grep -q "\"text\":\"$a\"" "$log.bob" && grep -q "\"text\":\"$b\"" "$log.alice" && return 0
    sleep 0.05
  done
  return 1
}

# mark LOG: remembers how long both logs are, for `since`.
mark() { ba=$(wc -l <"$1.alice"); bb=$(wc -l <"$1.bob"); }
# since LOG WHO EVENT: how many EVENT lines WHO logged since the last `mark`.
since() {
  local base=$ba; [ "$2" = bob ] && base=$bb
  tail -n +"$((base + 1))" "$1.$2" | grep -c "\"event\":\"$3\"" || true
}

# comes_back LOG WHAT T0: after a lost path (WHAT, for messages) that could return from T0 (ms)
# on, both sides must say "reconnected" within 30 s, audio must flow again both ways (the
# received count of the stats lines, one each 5 s, grows by at least 5 s of frames over the
# next 11 s), the call must stay back (one return for each stall), and chat must cross both
# ways. Sets BACK to the seconds from T0 until both were back.
comes_back() {
  local log=$1 what=$2 t0=$3 who r1a r1b r2a r2b
  for _ in $(seq 600); do
    [ "$(since "$log" alice reconnected)" -ge 1 ] && [ "$(since "$log" bob reconnected)" -ge 1 ] && break
    grep -q '"event":"ended"' "$log.alice" "$log.bob" && break
    sleep 0.05
  done
  BACK=$(awk -v s="$t0" -v e="$(ms)" 'BEGIN {printf "%.1f", (e - s) / 1000}')
  for who in alice bob; do
    if [ "$(since "$log" "$who" reconnected)" -lt 1 ]; then
      echo "$what: $who did not reconnect within 30 s"
      grep '"event":"\(reconnect\|ended\)' "$log.$who"; return 1
    fi
  done
  r1a=$(last_received "$log.alice"); r1b=$(last_received "$log.bob")
  sleep 11
  r2a=$(last_received "$log.alice"); r2b=$(last_received "$log.bob")
  if [ $((r2a - r1a)) -lt 250 ] || [ $((r2b - r1b)) -lt 250 ]; then
    echo "$what: audio did not resume (received $r1a -> $r2a by Alice, $r1b -> $r2b by Bob)"; return 1
  fi
  for who in alice bob; do
    if [ "$(since "$log" "$who" reconnecting)" != "$(since "$log" "$who" reconnected)" ]; then
      echo "$what: $who went on reconnecting after the path returned"
      grep '"event":"\(reconnect\|ended\)' "$log.$who"; return 1
    fi
  done
  if ! chat_both_ways "$log" "after: $what" "back after: $what"; then
    echo "$what: chat did not cross both ways after it"; return 1
  fi
}

# pictures_again LOG WHAT: once a call is back, video shown goes on growing both ways (at
# least 20 pictures in 6 s; stats each 5 s, 15 a second sent). Sets SHOWN to "Alice's / Bob's".
pictures_again() {
  local log=$1 what=$2 s1a s1b s2a s2b
  s1a=$(last_shown "$log.alice"); s1b=$(last_shown "$log.bob")
  sleep 6
  s2a=$(last_shown "$log.alice"); s2b=$(last_shown "$log.bob")
  if [ $((s2a - s1a)) -lt 20 ] || [ $((s2b - s1b)) -lt 20 ]; then
    echo "$what: video did not resume (shown $s1a -> $s2a by Alice, $s1b -> $s2b by Bob)"; return 1
  fi
  SHOWN="$((s2a - s1a)) / $((s2b - s1b))"
}

# outage LOG: with a call up (audio, and small video pictures both ways), everything between the two routers is dropped for each
# of $OUTAGES seconds in turn. Each time both sides must say "reconnecting" while it is dark,
# then come back (see `comes_back`).
outage() {
  local log=$1 dark t0 who
  for dark in ${OUTAGES:-30 60}; do
    mark "$log"
    ns pub iptables -I FORWARD -j DROP
    sleep "$dark"
    for who in alice bob; do
      if [ "$(since "$log" "$who" reconnecting)" -lt 1 ]; then
        echo "outage of $dark s: $who never said it was reconnecting"; ns pub iptables -D FORWARD -j DROP; return 1
      fi
    done
    t0=$(ms)
    ns pub iptables -D FORWARD -j DROP
    comes_back "$log" "outage of $dark s" "$t0" || return 1
    pictures_again "$log" "outage of $dark s" || return 1
    echo "outage: $dark s dark; both reconnected $BACK s after the path returned ($(since "$log" alice reconnecting) stall(s) for Alice, $(since "$log" bob reconnecting) for Bob); audio, video ($SHOWN more pictures shown, by the stats lines 6 s apart, one line each 5 s) and chat flow again both ways"
  done
}

# renumber LOG: with a call up (audio, and small video pictures both ways), Alice's router,
# then Bob's, gets a new public address
# (as when a provider renumbers a line; the router's mappings go with the old one). The old
# path is dead for good and neither router lets the other side's new address in: the caller
# finds the callee again through the DHT (the callee's presence, measured anew while its
# call reconnects; the caller's intent; a punch), and the call comes back (`comes_back`),
# pictures shown again both ways.
renumber() {
  local log=$1 r old new gw t0 who
  for r in nata natb; do
    case $r in
      nata) old=198.51.100.2 new=198.51.100.3 gw=198.51.100.1 ;;
      natb) old=203.0.113.2 new=203.0.113.3 gw=203.0.113.1 ;;
    esac
    mark "$log"
    t0=$(ms)
    # (Deleted first: deleting a primary address takes the secondaries of its subnet along.)
    ns "$r" ip addr del "$old/24" dev wan
    ns "$r" ip addr add "$new/24" dev wan
    ns "$r" ip route replace default via "$gw"
    comes_back "$log" "$r renumbered" "$t0" || return 1
    pictures_again "$log" "$r renumbered" || return 1
    echo "renumbered: $r's public address $old -> $new; both reconnected $BACK s later ($(since "$log" alice reconnecting) stall(s) for Alice, $(since "$log" bob reconnecting) for Bob); audio, video ($SHOWN more pictures shown, by the stats lines 6 s apart, one line each 5 s) and chat flow again both ways"
  done
}

# tone FILE: two seconds of a 440 Hz tone (48 kHz mono WAV), the voice of the outage cell.
tone() {
  python3 - "$1" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb")
w.setnchannels(1); w.setsampwidth(2); w.setframerate(48000)
w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 48000))) for i in range(96000)))
w.close()
PY
}

identities() {
  rm -rf "$OUT/alice" "$OUT/bob"
  alice_id=$("$BIN" --data-dir "$OUT/alice" --json id | sed -E 's/.*"peer_id":"([^"]+)".*/\1/')
  bob_id=$("$BIN" --data-dir "$OUT/bob" --json id | sed -E 's/.*"peer_id":"([^"]+)".*/\1/')
  "$BIN" --data-dir "$OUT/alice" contact add "$bob_id" --name bobhollis >/dev/null
  "$BIN" --data-dir "$OUT/bob" contact add "$alice_id" --name alicewren >/dev/null
}

# cell TYPE_A TYPE_B EXPECT(ok|fail) [capture|idle|outage|renumber|liar]: one call through the two
# routers. With `idle`, the routers forget a UDP mapping after 10 s of silence and the call,
# once connected, stays idle for 25 s before chat must still cross both ways (keepalives).
# With `outage`, the call carries audio (a tone from a file, both ways) and small video
# pictures (both ways), and the path goes
# dark for 30 s, then 60 s (see `outage`); with `renumber`, each router in turn gets a new
# public address (see `renumber`).
cell() {
  local ta=$1 tb=$2 expect=$3 mode=${4:-}
  local capture=""; [ "$mode" = capture ] && capture=1
  topology "$ta" "$tb"
  if [ "$mode" = idle ]; then
    for r in nata natb; do
      ns "$r" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=10
      ns "$r" sysctl -qw net.netfilter.nf_conntrack_udp_timeout_stream=10
    done
  fi
  local log="$OUT/$ta-$tb"
  rm -f "$log".*
  # The liar cell: three honest nodes and one that names 192.9.2.77:4444 as our address; a
  # counter there shows whether any probe is ever sent to it.
  ns dht "$DHTNET" 192.0.2.2 "$([ "$mode" = liar ] && echo 3 || echo 8)" 65536 >"$log.dht" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$log.dht" ] && break; sleep 0.05; done
  local bs; bs=$(head -n1 "$log.dht")
  if [ "$mode" = liar ]; then
    ns dht iptables -A INPUT -d 192.9.2.77 -j DROP
    ns dht python3 lab/liar.py 192.8.2.2 6881 192.9.2.77:4444 "$log.liar" &
    PIDS+=($!)
    bs="192.8.2.2:6881,$bs"
  fi
  if [ -n "$capture" ]; then
    ns nata tcpdump -i wan --immediate-mode -U -s0 -w "$log.a.pcap" udp 2>/dev/null &
    PIDS+=($!)
    ns natb tcpdump -i wan --immediate-mode -U -s0 -w "$log.b.pcap" udp 2>/dev/null &
    PIDS+=($!)
    sleep 0.5
  fi
  local bob_media=(--no-audio) alice_media=(--no-audio)
  if [ "$mode" = outage ] || [ "$mode" = renumber ]; then
    tone "$OUT/tone.wav"
    bob_media=(--audio-in "$OUT/tone.wav" --loop --audio-out "$log.bob.wav")
    alice_media=(--audio-in "$OUT/tone.wav" --loop --audio-out "$log.alice.wav")
  fi
  if [ "$mode" = outage ] || [ "$mode" = renumber ]; then
    # Small pictures both ways (two cores run both sides and the lab), decoded and dropped.
    local video=(--video test --video-size 320x180 --video-fps 15 --video-out /dev/null)
    bob_media+=("${video[@]}")
    alice_media+=("${video[@]}")
  fi
  mkfifo "$log.bin"
  ns b env RUST_LOG=${BOB_LOG:-$LOGS} "$BIN" --data-dir "$OUT/bob" --json --dht-bootstrap "$bs" \
    listen --once --accept anyone "${bob_media[@]}" <"$log.bin" >"$log.bob" 2>"$log.bob.err" &
  PIDS+=($!)
  exec 7<>"$log.bin"   # read-write: never blocks, even if the reader died
  for _ in $(seq 200); do grep -q '"event":"reachable"' "$log.bob" && break; sleep 0.1; done
  if ! grep -q '"event":"reachable"' "$log.bob"; then
    echo "$ta -> $tb: Bob never stored his records"; cat "$log.bob" "$log.bob.err"; return 1
  fi
  local out0 out1 start end code=0 tries=0
  out0=$(( $(udp_out a) + $(udp_out b) ))
  start=$(ms)
  mkfifo "$log.ain"
  # Bob's records may not have reached every node the caller asks first: a caller that finds
  # none (exit 3, "no rendezvous record") tries again, up to three times.
  while :; do
    tries=$((tries + 1))
    ns a env RUST_LOG=${ALICE_LOG:-$LOGS} "$BIN" --data-dir "$OUT/alice" --json --dht-bootstrap "$bs" call bobhollis "${alice_media[@]}" \
      <"$log.ain" >"$log.alice" 2>"$log.alice.err" &
    PIDS+=($!)
    local apid=$!
    exec 8<>"$log.ain"
    until_connected "$log.alice" "$apid" 400
    end=$(ms)
    if grep -q '"event":"connected"' "$log.alice"; then
      if [ "$mode" = idle ]; then
        sleep 25
        echo "still there after 25 s of silence" >&8
        for _ in $(seq 50); do grep -q '"event":"chat"' "$log.bob" && break; sleep 0.1; done
        echo "yes" >&7
        for _ in $(seq 50); do grep -q '"event":"chat"' "$log.alice" && break; sleep 0.1; done
        if ! grep -q '"event":"chat"' "$log.bob" || ! grep -q '"event":"chat"' "$log.alice"; then
          echo "keepalive: chat did not cross after 25 s idle"; exec 8>&-; return 1
        fi
        echo "keepalive: chat crossed both ways after 25 s idle with 10 s NAT mapping timeouts"
      fi
      if { [ "$mode" = outage ] && ! outage "$log"; } || { [ "$mode" = renumber ] && ! renumber "$log"; }; then
        echo "Alice:"; grep -v '"event":"stats"' "$log.alice" | tail -n 20; tail -n 20 "$log.alice.err"
        echo "Bob:"; grep -v '"event":"stats"' "$log.bob" | tail -n 20; tail -n 20 "$log.bob.err"
        exec 8>&-; return 1
      fi
      exec 8>&-; wait "$apid" || code=$?; forget "$apid"; break
    fi
    exec 8>&-; wait "$apid" || code=$?; forget "$apid"
    if [ "$code" = 3 ] && grep -q "no address this hour" "$log.alice.err" && [ $tries -lt 3 ]; then
      code=0; sleep 1; continue
    fi
    break
  done
  out1=$(( $(udp_out a) + $(udp_out b) ))
  exec 7>&-
  local result secs reason=""
  secs=$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.2f", (e - s) / 1000}')
  if grep -q '"event":"connected"' "$log.alice"; then
    result=ok
    for _ in $(seq 50); do grep -q '"event":"connected"' "$log.bob" && break; sleep 0.1; done
    grep -q '"event":"connected"' "$log.bob" || result="ok-caller-only"
  else
    result=fail
    reason=$(grep -m1 '"event":"error"' "$log.alice" | sed -E 's/.*"message":"([^"]*)".*/\1/')
  fi
  local path="" fwd
  [ -n "$reason" ] || path="to $(field connected remote "$log.alice")"
  for who in alice bob; do
    fwd=$(field port_mapped protocol "$log.$who")
    [ -z "$fwd" ] || path="$path ($who's router forwards, $fwd)"
  done
  printf '| %-6s | %-6s | %-4s | %-4s | %5s s | %6s | %s\n' "$ta" "$tb" "$expect" "$result" "$secs" \
    "$((out1 - out0))" "${reason:-$path}" | tee -a "$OUT/matrix.md"
  if [ "$mode" = liar ]; then
    local sunk asked_a asked_b
    sunk=$(ns dht iptables -L INPUT -v -x -n | awk '/192.9.2.77/ {print $1}')
    asked_a=$(grep -c "from 198.51.100.2:" "$log.liar" || true)
    asked_b=$(grep -c "from 203.0.113.2:" "$log.liar" || true)
    echo "liar: asked by Alice's NAT $asked_a time(s), by Bob's $asked_b; packets to the lie: $sunk"
    if [ "$asked_a" = 0 ] || [ "$asked_b" = 0 ] || [ "$sunk" != 0 ]; then
      echo "liar cell: the lying node must be asked by both and the named address get nothing"
      cleanup; return 1
    fi
  fi
  cleanup
  if [ "$result" != "$expect" ] && ! { [ "$expect" = ok ] && [ "$result" = ok-caller-only ]; }; then
    echo "cell $ta -> $tb: expected $expect, got $result"; cat "$log.alice" "$log.alice.err"
    echo "Bob's log:"; tail -n 40 "$log.bob.err"
    return 1
  fi
  if [ "$result" = fail ] && ! grep -q "symmetric" <<<"$reason"; then
    echo "cell $ta -> $tb: the failure does not name the NAT type"; cat "$log.alice"; return 1
  fi
  # "No direct path" has an exit code of its own (8), apart from "nobody answered" (3).
  if [ "$result" = fail ] && [ "$code" != 8 ]; then
    echo "cell $ta -> $tb: exit code $code, not 8 (no direct path)"; return 1
  fi
}

[ "$(id -u)" -eq 0 ] || { echo "the NAT lab needs root (network namespaces)"; exit 2; }
# Without iptables every router would forward unfiltered and un-NATed, and every cell "pass".
need="ip iptables nft miniupnpd python3"
[ -n "${SKIP_CAPTURE:-}" ] && [ -n "${SKIP_LAN:-}" ] || need="$need tcpdump"
[ -n "${SKIP_DESKTOP:-}" ] || need="$need Xvfb"
for tool in $need; do
  command -v "$tool" >/dev/null || { echo "the NAT lab needs $tool (.ci/run installs it)"; exit 2; }
done
[ -x "$BIN" ] && [ -x "$DHTNET" ] || cargo build --locked -q -p extrasafe --bin extrasafe -p extrasafe-bench --bin dhtnet
identities
# Which pairs a plain UDP punch can cross (lab recipe, measured here with netfilter):
# symmetric meets only NATs that do not filter by port.
# map: a symmetric NAT whose router forwards ports on request (PCP, NAT-PMP, UPnP); upnp: the
# same with UPnP only. A forwarded port makes even symmetric NATs meet.
CELLS=${CELLS-"none:none none:port port:port addr:addr full:full change:change sym:none sym:port sym:addr sym:full sym:change sym:sym sym:map map:port sym:upnp"}
: >"$OUT/matrix.md"
echo "| Alice | Bob    | want | got  | connect | UDP pk | path or reason"
failed=0
for c in $CELLS; do
  ta=${c%%:*}; tb=${c##*:}
  case "$ta:$tb" in
    sym:port|sym:change|sym:sym|port:sym|change:sym) want=fail ;;
    *) want=ok ;;
  esac
  cell "$ta" "$tb" "$want" || failed=1
  cleanup   # also after a cell that failed half-way: the next one starts from nothing
  { exec 7>&- 8>&-; } 2>/dev/null || true
done

if [ -z "${SKIP_IDLE:-}" ]; then
  echo "keepalives: routers forget idle UDP mappings after 10 s"
  cell port port ok idle || failed=1
  cleanup
fi

if [ -z "${SKIP_OUTAGE:-}" ]; then
  echo "outages: the path between the routers goes dark for ${OUTAGES:-30 60} s during a call with audio and video"
  cell port port ok outage || failed=1
  cleanup
  { exec 7>&- 8>&-; } 2>/dev/null || true
fi

if [ -z "${SKIP_RENUMBER:-}" ]; then
  echo "renumbering: each router in turn gets a new public address during a call with audio and video"
  cell port port ok renumber || failed=1
  cleanup
  { exec 7>&- 8>&-; } 2>/dev/null || true
fi

# xvfb NS: a private X screen started inside namespace NS (its number, picked by Xvfb, in DISP).
xvfb() {
  local f="$OUT/$1.display"
  rm -f "$f"
  ns "$1" Xvfb -displayfd 1 -screen 0 1280x800x24 -nolisten tcp >"$f" 2>/dev/null &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$f" ] && break; sleep 0.05; done
  DISP=":$(head -n1 "$f")"
}

# wait_for PATTERN FILE TICKS: until PATTERN is in FILE (TICKS x 50 ms at most).
wait_for() {
  for _ in $(seq "$3"); do grep -q "$1" "$2" && return 0; sleep 0.05; done
  return 1
}

# desktop_cell TYPE_A TYPE_B WHO: one call through the two routers, as in `cell`, with the
# desktop app (on a private X screen in its namespace, driven by --automation) as WHO:
# `alice` places the call from the window, `bob` takes it in the window; the other side is
# the command line. The app's reachability (DHT records, port mapping, punching) is the
# same library the command line uses; a cell behind a `map` router shows the app asked it
# to forward a port.
desktop_cell() {
  local ta=$1 tb=$2 who=$3
  topology "$ta" "$tb"
  local log="$OUT/desktop-$who-$ta-$tb"
  rm -f "$log".*
  ns dht "$DHTNET" 192.0.2.2 8 65536 >"$log.dht" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$log.dht" ] && break; sleep 0.05; done
  local bs; bs=$(head -n1 "$log.dht")
  local side=a; [ "$who" = bob ] && side=b
  xvfb "$side"
  local desk=(env DISPLAY="$DISP" RUST_LOG="${DESK_LOG:-warn}" "$DESKTOP" --automation --no-sound --video none
              --dht-bootstrap "$bs" --files-dir "$OUT/files-$who")
  mkfifo "$log.bin" "$log.ain"
  local start end result=fail tries=0 mapped
  if [ "$who" = bob ]; then
    ns b "${desk[@]}" --data-dir "$OUT/bob" <"$log.bin" >"$log.bob" 2>"$log.bob.err" &
    PIDS+=($!)
    exec 7<>"$log.bin"
    # Behind the forwarding router, the records must name the forwarded port (as the window
    # says) before they are worth calling; elsewhere any stored records do.
    local stored='"records":{'; [ "$tb" = map ] && stored='"forwarded":true'
    if ! wait_for "$stored" "$log.bob" 400; then
      echo "desktop Bob never stored his records"; tail -c 3000 "$log.bob"; cat "$log.bob.err"
      exec 7>&-; cleanup; return 1
    fi
    # The window rings; the person answers.
    ( wait_for '"name":"incoming"' "$log.bob" 600 && echo '{"action":"accept"}' >"$log.bin" ) &
    PIDS+=($!)
    start=$(ms)
    local code=0
    while :; do
      tries=$((tries + 1))
      ns a env RUST_LOG="${ALICE_LOG:-$LOGS}" "$BIN" --data-dir "$OUT/alice" --json --dht-bootstrap "$bs" call bobhollis \
        --no-audio <"$log.ain" >"$log.alice" 2>"$log.alice.err" &
      PIDS+=($!)
      local apid=$!
      exec 8<>"$log.ain"
      until_connected "$log.alice" "$apid" 400
      end=$(ms)
      if grep -q '"event":"connected"' "$log.alice"; then
        wait_for '"name":"connected"' "$log.bob" 100 && result=ok
        exec 8>&-; wait "$apid" || true; forget "$apid"; break
      fi
      exec 8>&-; wait "$apid" || code=$?; forget "$apid"
      if [ "$code" = 3 ] && grep -q "no address this hour" "$log.alice.err" && [ $tries -lt 3 ]; then
        code=0; sleep 1; continue
      fi
      break
    done
    exec 7>&-
    mapped=$(grep -o '"port_mapped":"[^"]*"' "$log.bob" | tail -n1 | cut -d'"' -f4)
  else
    ns b env RUST_LOG="${BOB_LOG:-$LOGS}" "$BIN" --data-dir "$OUT/bob" --json --dht-bootstrap "$bs" \
      listen --once --accept anyone --no-audio <"$log.bin" >"$log.bob" 2>"$log.bob.err" &
    PIDS+=($!)
    exec 7<>"$log.bin"
    if ! wait_for '"event":"reachable"' "$log.bob" 400; then
      echo "Bob never stored his records"; cat "$log.bob" "$log.bob.err"; exec 7>&-; cleanup; return 1
    fi
    ns a "${desk[@]}" --data-dir "$OUT/alice" <"$log.ain" >"$log.alice" 2>"$log.alice.err" &
    PIDS+=($!)
    exec 8<>"$log.ain"
    # Behind the forwarding router, the person sees the forwarded port before calling.
    local ready='"me":{'; [ "$ta" = map ] && ready='"port_mapped":"'
    if ! wait_for "$ready" "$log.alice" 200; then
      echo "desktop Alice did not start"; cat "$log.alice.err"; exec 7>&- 8>&-; cleanup; return 1
    fi
    start=$(ms)
    while :; do
      tries=$((tries + 1))
      local seen; seen=$(wc -l <"$log.alice")   # only what the window shows from now on
      echo "{\"action\":\"call\",\"peer_id\":\"$bob_id\"}" >&8
      for _ in $(seq 600); do
        tail -n +$((seen + 1)) "$log.alice" | grep -q '"name":"connected"\|"name":"ended"' && break
        sleep 0.05
      done
      end=$(ms)
      if tail -n +$((seen + 1)) "$log.alice" | grep -q '"name":"connected"'; then
        wait_for '"event":"connected"' "$log.bob" 100 && result=ok
        break
      fi
      # Bob's records may not have reached the nodes asked first: the person calls again.
      if tail -n +$((seen + 1)) "$log.alice" | grep -q "is not online" && [ $tries -lt 3 ]; then
        echo '{"action":"close_call"}' >&8; sleep 1; continue
      fi
      break
    done
    mapped=$(grep -o '"port_mapped":"[^"]*"' "$log.alice" | tail -n1 | cut -d'"' -f4)
    exec 7>&- 8>&-
  fi
  local secs; secs=$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.2f", (e - s) / 1000}')
  printf '| desktop as %-5s | %-6s | %-6s | %-4s | %5s s | %s\n' "$who" "$ta" "$tb" "$result" "$secs" \
    "${mapped:+forwarded by the router of the window, $mapped}" | tee -a "$OUT/matrix.md"
  cleanup
  if [ "$result" != ok ]; then
    echo "desktop cell $ta -> $tb ($who in the window): no call"
    tail -c 3000 "$log.alice"; tail -n 60 "$log.alice.err"; tail -c 3000 "$log.bob"; tail -n 60 "$log.bob.err"
    return 1
  fi
  # Behind a forwarding router, the window must have asked for (and shown) the mapping.
  local mine=$ta; [ "$who" = bob ] && mine=$tb
  if [ "$mine" = map ] && [ -z "$mapped" ]; then
    echo "desktop cell $ta -> $tb: the window's router forwards ports but no mapping was shown"
    return 1
  fi
}

# lan_bob LOG DHT: Bob (namespace lb) listens once, anyone, no audio, his stdin on fd 7;
# returns once he announced himself on the LAN (or after 10 s). His PID in BPID.
lan_bob() {
  local log=$1 nodht=$2
  mkfifo "$log.bin" "$log.ain"
  ns lb "$BIN" --data-dir "$OUT/bob" --json --dht-bootstrap $nodht listen --once \
    --accept anyone --no-audio <"$log.bin" >"$log.bob" 2>"$log.bob.err" &
  PIDS+=($!)
  BPID=$!
  exec 7<>"$log.bin"   # read-write: never blocks, even if the reader died
  for _ in $(seq 100); do grep -q '"event":"lan_announced"' "$log.bob" && break; sleep 0.1; done
}

# lan_alice LOG DHT: Alice (namespace la) calls bobhollis by name, no audio, her stdin on
# fd 8. Her PID in APID.
lan_alice() {
  local log=$1 nodht=$2
  ns la "$BIN" --data-dir "$OUT/alice" --json --dht-bootstrap $nodht call bobhollis --no-audio \
    <"$log.ain" >"$log.alice" 2>"$log.alice.err" &
  PIDS+=($!)
  APID=$!
  exec 8<>"$log.ain"
}

# lan_cell: Alice and Bob on one LAN segment with no router, no DHT and no internet; Alice
# calls `bobhollis` (no address known): the blinded mDNS announcement must find him.
lan_cell() {
  mkns la; mkns lb
  link la eth0 10.9.0.1 lb eth0 10.9.0.2
  local log="$OUT/lan" nodht=10.9.0.254:6881   # a DHT entry point nobody answers at
  rm -f "$log".*
  ns la tcpdump -i eth0 --immediate-mode -U -s0 -w "$log.pcap" udp 2>/dev/null &
  PIDS+=($!)
  sleep 0.5
  lan_bob "$log" "$nodht"
  local bpid=$BPID
  local start end
  start=$(ms)
  lan_alice "$log" "$nodht"
  local apid=$APID
  until_connected "$log.alice" "$apid" 300
  end=$(ms)
  exec 8>&-; wait "$apid" || true; forget "$apid"
  exec 7>&-
  # Bob (--once) stops after the call: withdrawing his announcement (mDNS goodbye) first.
  for _ in $(seq 50); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.1; done
  sleep 0.5
  cleanup
  if ! grep -q '"event":"connected"' "$log.alice"; then
    echo "LAN: Alice did not find Bob"; cat "$log.alice" "$log.alice.err" "$log.bob" "$log.bob.err"
    return 1
  fi
  # (The DHT is looked at too, in parallel, but nobody answers at its entry point here.)
  printf '| LAN, no internet | %s s | to %s\n' \
    "$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.2f", (e - s) / 1000}')" \
    "$(field connected remote "$log.alice")" | tee -a "$OUT/matrix.md"
  python3 lab/wire_check.py --lan "$log.pcap" "$log.pcap" "$alice_id" "$bob_id" alicewren bobhollis
}

# lan_move_cell: as lan_cell, then during the call Bob's address changes (10.9.0.2 becomes
# 10.9.0.3: a new lease, another access point). The old path is dead; Alice's call, found on
# the LAN, must look for Bob there again while it reconnects, find his new address, resume
# (same keys, same call) and carry chat both ways.
lan_move_cell() {
  mkns la; mkns lb
  link la eth0 10.9.0.1 lb eth0 10.9.0.2
  local log="$OUT/lanmove" nodht=10.9.0.254:6881 t0 back
  rm -f "$log".*
  lan_bob "$log" "$nodht"
  local bpid=$BPID
  lan_alice "$log" "$nodht"
  local apid=$APID
  until_connected "$log.alice" "$apid" 300
  local fail=""
  if ! grep -q '"event":"connected"' "$log.alice"; then
    fail="LAN move: Alice did not find Bob in the first place"
  else
    t0=$(ms)
    ns lb ip addr del 10.9.0.2/24 dev eth0
    ns lb ip addr add 10.9.0.3/24 dev eth0
    for _ in $(seq 1200); do
      grep -q '"event":"reconnected"' "$log.alice" && grep -q '"event":"reconnected"' "$log.bob" && break
      grep -q '"event":"ended"' "$log.alice" "$log.bob" && break
      sleep 0.05
    done
    back=$(awk -v s="$t0" -v e="$(ms)" 'BEGIN {printf "%.1f", (e - s) / 1000}')
    if ! grep -q '"event":"reconnected"' "$log.alice" || ! grep -q '"event":"reconnected"' "$log.bob"; then
      fail="LAN move: the call did not come back on Bob's new address within 60 s"
    elif ! grep '"event":"reconnected"' "$log.alice" | grep -q '10.9.0.3'; then
      fail="LAN move: Alice came back, but not to Bob's new address"
    else
      chat_both_ways "$log" "moved along" "still here" \
        || fail="LAN move: chat did not cross both ways after the move"
    fi
  fi
  exec 8>&-; wait "$apid" || true; forget "$apid"
  exec 7>&-
  for _ in $(seq 50); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.1; done
  cleanup
  if [ -n "$fail" ]; then
    echo "$fail"; cat "$log.alice" "$log.alice.err" "$log.bob" "$log.bob.err"
    return 1
  fi
  printf '| LAN, Bob moves to another address mid-call | back %s s after the move | to %s\n' \
    "$back" "$(grep '"event":"reconnected"' "$log.alice" | tail -n1 | sed -E 's/.*"remote":"([^"]*)".*/\1/')" \
    | tee -a "$OUT/matrix.md"
}

if [ -z "${SKIP_DESKTOP:-}" ]; then
  # The window must get through where the command line does: each cell below needs the
  # window's own port mapping (a symmetric NAT meets a port-restricted one only through it).
  echo "the desktop app through the NAT lab (its side behind the forwarding router)"
  [ -x "$DESKTOP" ] || cargo build --locked -q -p extrasafe-desktop --bin extrasafe-desktop
  desktop_cell sym map bob || failed=1
  cleanup
  desktop_cell map port alice || failed=1
  cleanup
fi

if [ -z "${SKIP_LIAR:-}" ]; then
  echo "a lying DHT node names 192.9.2.77:4444 as the address it saw; 3 honest nodes do not"
  cell port port ok liar || failed=1
  cleanup
fi

if [ -z "${SKIP_LAN:-}" ]; then
  echo "LAN without internet: blinded mDNS"
  lan_cell || failed=1
  cleanup
  echo "LAN: the callee moves to another address during the call"
  lan_move_cell || failed=1
  cleanup
fi

if [ -z "${SKIP_CAPTURE:-}" ]; then
  echo "privacy: capturing both NATs' WAN side during a call (port-restricted on both sides)"
  cell port port ok capture || failed=1
  cleanup
  python3 lab/wire_check.py "$OUT/port-port.a.pcap" "$OUT/port-port.b.pcap" \
    "$alice_id" "$bob_id" alicewren bobhollis 10.0.1.2 10.0.2.2 || failed=1
fi
exit $failed
