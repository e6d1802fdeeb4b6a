# Shared by the bench scripts (sourced, not run).

# Starts the release daemon with config $1, stderr to $2; sets $daemon (pid) and $port (its UDP
# port, read from the socket table: the bench configs log at warn, so "Listening." is not shown).
start_daemon() {
  ./target/release/calltrackd run --config "$1" 2> "$2" &
  daemon=$!
  port=""
  for _ in $(seq 100); do
    port=$(ss -lunp 2>/dev/null | awk -v pid="pid=$daemon," '$0 ~ pid {split($4,a,":"); print a[length(a)]; exit}')
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "daemon did not start"
  cat "$2"
  exit 1
}
