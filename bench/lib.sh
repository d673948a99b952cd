# Shared by the benchmarks (sourced, not run).

now() { date +%s.%N; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# start_sshd DIR ADDR PORT [COMMAND-PREFIX...]: a private sshd (key login only, files in DIR)
# listening on ADDR:PORT, started under the prefix (e.g. `ip netns exec NS`). Sets scp_opts
# for scp to reach it with AES-128-GCM, the fastest scp cipher here.
start_sshd() {
  local dir=$1 addr=$2 port=$3; shift 3
  mkdir -p /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$dir/hostkey"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/id"
  cp "$dir/id.pub" "$dir/authorized_keys"
  cat > "$dir/sshd_config" <<CFG
Port $port
ListenAddress $addr
HostKey $dir/hostkey
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $dir/sshd.pid
Subsystem sftp internal-sftp
CFG
  "$@" /usr/sbin/sshd -f "$dir/sshd_config"
  sleep 0.5
  scp_opts=(-q -P "$port" -i "$dir/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -c aes128-gcm@openssh.com)
}

# lossy_link_down NS_A NS_B: stops what runs in the two namespaces and deletes them.
lossy_link_down() {
  ip netns pids "$1" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$2" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$1" 2>/dev/null || true; ip netns del "$2" 2>/dev/null || true
}

# lossy_link NS_A NS_B RATE LOSS RTT_MS: two fresh namespaces joined by a veth pair
# (10.99.0.1 | 10.99.0.2, existing only there), `tbf` at RATE on both ends, random loss LOSS
# (a fraction) on arrival, and RTT_MS of round trip: this kernel has no netem, so each side's
# arriving packets go through an NFQUEUE that `netdelay` (target/release) holds for half of it.
lossy_link() {
  local A=$1 B=$2 rate=$3 loss=$4 rtt=$5
  command -v ethtool >/dev/null || { apt-get update -qq && apt-get install -y -qq ethtool >/dev/null; }
  ip netns add $A; ip netns add $B
  ip link add es-va type veth peer name es-vb
  ip link set es-va netns $A; ip link set es-vb netns $B
  ip -n $A addr add 10.99.0.1/24 dev es-va; ip -n $B addr add 10.99.0.2/24 dev es-vb
  for ns in $A $B; do ip -n $ns link set lo up; done
  ip -n $A link set es-va up; ip -n $B link set es-vb up
  # Every packet on the wire is one packet for the loss rule: with segmentation offloads on,
  # veth carries 64 KB TCP (and UDP GSO) super-packets whole, and dropping one of those is one
  # loss event for dozens of segments, which flatters TCP.
  ip netns exec $A ethtool -K es-va tso off gso off gro off >/dev/null
  ip netns exec $B ethtool -K es-vb tso off gso off gro off >/dev/null
  tc -n $A qdisc add dev es-va root tbf rate "$rate" burst 64kb limit 1mb
  tc -n $B qdisc add dev es-vb root tbf rate "$rate" burst 64kb limit 1mb
  for ns in $A $B; do
    ip netns exec $ns iptables -A INPUT -i es-v+ -m statistic --mode random --probability $loss -j DROP
  done
  if [ "$rtt" -gt 0 ]; then
    for ns in $A $B; do
      ip netns exec $ns iptables -A INPUT -i es-v+ -j NFQUEUE --queue-num 0
      ip netns exec $ns "$PWD/target/release/netdelay" --queue 0 --delay-ms $((rtt / 2)) &
    done
    sleep 0.3
  fi
}

# pesq_venv: sets `venv` to a Python with PyPI pesq, numpy and scipy (PESQ_VENV, default
# /tmp/extrasafe-pesq-venv, made once).
pesq_venv() {
  venv=${PESQ_VENV:-/tmp/extrasafe-pesq-venv}
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pesq numpy scipy
  fi
}

# build_with_base BASE WORK OLD NEW: `extrasafe` (release) built at revision BASE (a worktree
# at WORK/base, which the caller removes) and from this tree, copied to OLD and NEW. Both
# builds share this tree's target folder; this tree's is built last, so
# target/release/extrasafe is left as this tree's.
build_with_base() {
  local base=$1 work=$2 old=$3 new=$4
  git worktree add -q --detach "$work/base" "$base"
  (cd "$work/base" && CARGO_TARGET_DIR="$OLDPWD/target" cargo build --release -q -p extrasafe)
  cp target/release/extrasafe "$old"
  # The two trees' crates share their names and (cargo hashes path sources relative to the
  # workspace) their artifacts' names: every source of this tree is made newer than the
  # base's build, or cargo would take the base's crates for this tree's.
  find crates -name '*.rs' -exec touch {} +
  cargo build --release -q -p extrasafe
  cp target/release/extrasafe "$new"
}

# baresip_conf DIR DEVICE PORT SOURCE: a baresip 1.0 configuration in DIR for a call on
# 127.0.0.1:PORT with Opus at 32 kb/s over SRTP: its player is the aubridge device DEVICE,
# its source SOURCE (`aubridge,DEVICE` loops what it plays into its encoder, which sndfile
# dumps into DIR; `aufile,FILE.wav` sends a file).
baresip_conf() {
  mkdir -p "$1"
  cat >"$1/config" <<CONF
poll_method epoll
sip_listen 127.0.0.1:$3
audio_player aubridge,$2
audio_source $4
audio_alert aubridge,$2
ausrc_srate 48000
auplay_srate 48000
ausrc_channels 1
auplay_channels 1
module_path /usr/lib/baresip/modules
module opus.so
module aufile.so
module aubridge.so
module srtp.so
module sndfile.so
module_app account.so
module_app menu.so
snd_path $1
opus_bitrate 32000
CONF
}
