# Shared by the transfer benchmarks (sourced, not run).

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
