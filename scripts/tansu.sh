#!/usr/bin/env bash
# Installs the tansu broker into a cache and starts it on a free loopback port.
#
#   scripts/tansu.sh install        build tansu once into $LEADSCORE_TOOLS (default ~/.cache/leadscore/tools)
#   scripts/tansu.sh start DIR      start a broker whose pid, port and log live in DIR; prints the bootstrap address
#   scripts/tansu.sh stop DIR       stop the broker started in DIR
#
#   scripts/tansu.sh user DIR NAME PASSWORD [scram256|scram512]
#                                   create a SCRAM user on the broker started in DIR (before authentication is on)
#
# Set TANSU_STORAGE=sqlite to keep the broker's data in DIR/tansu.db across restarts (memory otherwise),
# TANSU_AUTHENTICATION=1 to require SASL from every client, and TANSU_ADVERTISED=HOST:PORT to advertise
# another address than the listener's (a TLS-terminating proxy in front of the broker, for example).
set -euo pipefail

TANSU_VERSION=0.6.0
TOOLS=${LEADSCORE_TOOLS:-$HOME/.cache/leadscore/tools}
TANSU_BIN=$TOOLS/tansu-$TANSU_VERSION/bin/tansu

install_tansu() {
  if [ -x "$TANSU_BIN" ]; then
    return 0
  fi
  mkdir -p "$TOOLS"
  echo "installing tansu $TANSU_VERSION into $TOOLS (this takes 12-27 minutes on a cold machine)" >&2
  cargo install "tansu@$TANSU_VERSION" --locked --features dynostore,libsql \
    --root "$TOOLS/tansu-$TANSU_VERSION" --target-dir "$TOOLS/tansu-build" >&2
  rm -rf "$TOOLS/tansu-build"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_tansu() {
  local dir=$1
  mkdir -p "$dir"
  install_tansu
  local port=${TANSU_PORT:-$(free_port)}
  local storage="memory://tansu/"
  if [ "${TANSU_STORAGE:-memory}" = sqlite ]; then
    storage="sqlite://tansu.db"
  fi
  local authentication=()
  if [ "${TANSU_AUTHENTICATION:-0}" = 1 ]; then
    authentication=(--authentication)
  fi
  (cd "$dir" && exec "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://${TANSU_ADVERTISED:-127.0.0.1:$port}" \
      --storage-engine "$storage" "${authentication[@]}" >>"$dir/tansu.log" 2>&1) &
  echo $! >"$dir/tansu.pid"
  echo "$port" >"$dir/tansu.port"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "tansu did not start listening on port $port; see $dir/tansu.log" >&2
  return 1
}

stop_tansu() {
  local dir=$1
  if [ -f "$dir/tansu.pid" ]; then
    local pid
    pid=$(cat "$dir/tansu.pid")
    kill "$pid" 2>/dev/null || true
    # Wait for it to let go of its port and storage, so that a restart can take them.
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$dir/tansu.pid"
  fi
}

create_user() {
  local dir=$1 name=$2 password=$3 mechanism=${4:-scram512}
  "$TANSU_BIN" user create --broker "tcp://127.0.0.1:$(cat "$dir/tansu.port")" --mechanism "$mechanism" \
    "$name" "$password" >>"$dir/tansu.log" 2>&1
}

case "${1:-}" in
  install) install_tansu ;;
  start) start_tansu "${2:?usage: tansu.sh start DIR}" ;;
  stop) stop_tansu "${2:?usage: tansu.sh stop DIR}" ;;
  user) create_user "${2:?usage: tansu.sh user DIR NAME PASSWORD [MECHANISM]}" "${3:?NAME}" "${4:?PASSWORD}" "${5:-scram512}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR | user DIR NAME PASSWORD [MECHANISM]" >&2; exit 2 ;;
esac
