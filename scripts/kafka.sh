#!/usr/bin/env bash
# Installs Apache Kafka's own broker from Maven Central into a cache and runs it without docker, in KRaft mode
# (every node broker and controller at once), on free loopback ports.
#
#   scripts/kafka.sh install        fetch Kafka's jars once into $LEADSCORE_TOOLS (default ~/.cache/leadscore/tools)
#   scripts/kafka.sh start DIR      start a node whose settings, data, pid, ports and log live in DIR; prints the
#                                   bootstrap address. The first start formats DIR, later ones (after stop or
#                                   kill) reuse its storage, ports and settings.
#   scripts/kafka.sh stop DIR       stop the node of DIR (SIGTERM, SIGKILL after 20 s)
#   scripts/kafka.sh kill DIR       kill -9 the node of DIR
#   scripts/kafka.sh start-cluster DIR [N]
#                                   start N (default 3) nodes in DIR/node-1..N, all voters of the controller quorum,
#                                   replication factor 3, min.insync.replicas=2; prints the bootstrap list.
#                                   stop, kill and start DIR/node-I act on one node.
#   scripts/kafka.sh stop-cluster DIR   stop all the nodes of DIR at once
#   scripts/kafka.sh user DIR NAME PASSWORD [scram256|scram512]
#                                   create a SCRAM user, or change its password, on the node running in DIR
#
# DIR holds server.properties, heap, data/ (log dirs and KRaft metadata), kafka.pid, kafka.port (PLAINTEXT,
# the bootstrap port), controller.port, kafka.log (the broker's log) and tools.log.
# KAFKA_SECURITY=1 at DIR's first start adds an SSL listener that requires a client certificate (DIR/ssl.port)
# and a SASL_SSL listener with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN (DIR/sasl_ssl.port); brokers talk
# PLAINTEXT among themselves. Its certificate is KAFKA_TLS_CERT, KAFKA_TLS_KEY, KAFKA_TLS_CA (PEM files), or one
# from a new CA in DIR/tls: ca.pem, server.pem, server.key, and client.pem and client.key for clients.
# KAFKA_PLAIN_USERS="alice:secret,bob:pw" are its PLAIN users, KAFKA_SCRAM_USERS="carol:pw:scram512,..." its
# first SCRAM users. At every start: KAFKA_HEAP (default "-Xms256m -Xmx1g", "-Xms128m -Xmx512m" in a cluster)
# and KAFKA_START_TIMEOUT (seconds, default 60).
set -euo pipefail

KAFKA_VERSION=4.1.1
TOOLS=${LEADSCORE_TOOLS:-$HOME/.cache/leadscore/tools}
LIBS=$TOOLS/kafka-$KAFKA_VERSION/libs
HERE=$(cd "$(dirname "$0")" && pwd)
POM=$HERE/kafka/pom.xml           # the jars: Kafka and its runtime dependencies
LOG4J=$HERE/kafka/log4j2.properties

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

install_kafka() {
  command -v java >/dev/null 2>&1 ||
    die "java not found: Kafka $KAFKA_VERSION needs Java 17 or later (Debian: apt-get install openjdk-17-jre-headless)"
  if [ -d "$LIBS" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: it fetches Kafka $KAFKA_VERSION from Maven Central (Debian: apt-get install maven)"
  mkdir -p "$TOOLS"
  echo "installing Kafka $KAFKA_VERSION into $TOOLS (45 MB from Maven Central, 10-30 s)" >&2
  # Into a temporary directory, renamed when complete: an interrupted install leaves no half of libs/.
  tmp=$(mktemp -d "$TOOLS/.kafka-$KAFKA_VERSION.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mvn -B -q -f "$POM" -Dmaven.repo.local="$TOOLS/m2" -Dkafka.version="$KAFKA_VERSION" -Dlibs.dir="$tmp/libs" \
    dependency:copy-dependencies >"$tmp/mvn.log" 2>&1 ||
    { cat "$tmp/mvn.log" >&2; die "could not fetch Kafka $KAFKA_VERSION with $POM"; }
  rm "$tmp/mvn.log"
  # When another install won the race, its copy stays and the trap removes this one.
  mv -T "$tmp" "$TOOLS/kafka-$KAFKA_VERSION" 2>/dev/null || true
  trap - EXIT
  rm -rf "$tmp"
}

# N free loopback ports, all different.
free_ports() {
  python3 -c 'import socket,sys; ss=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# A random cluster id: 16 bytes in URL-safe base64 without padding.
new_cluster_id() {
  # A random id may start with "-"; it is passed as --cluster-id=ID so that it is never read as an option.
  python3 -c 'import base64,uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))'
}

# Runs a class of Kafka's command-line tools with a small heap, its output into DIR/tools.log.
run_tool() {
  local dir=$1
  shift
  java -Xmx256m -Dlog4j2.configurationFile="$LOG4J" -cp "$LIBS/*" "$@" \
    >>"$dir/tools.log" 2>&1 </dev/null || { tail -n 5 "$dir/tools.log" >&2; die "$1 failed; see $dir/tools.log"; }
}

# A PEM file as one properties value: its newlines as \n, which Kafka reads back as newlines.
pem_value() {
  awk '{ printf "%s\\n", $0 }' "$@"
}

# Sets TLS_CERT, TLS_KEY and TLS_CA: KAFKA_TLS_* or a CA, server and client certificate made in DIR once.
tls_files() {
  if [ -n "${KAFKA_TLS_CERT:-}" ]; then
    TLS_CERT=$KAFKA_TLS_CERT TLS_KEY=${KAFKA_TLS_KEY:?KAFKA_TLS_KEY is missing} TLS_CA=${KAFKA_TLS_CA:?KAFKA_TLS_CA is missing}
    return 0
  fi
  TLS_CERT=$1/server.pem TLS_KEY=$1/server.key TLS_CA=$1/ca.pem
  [ ! -f "$TLS_CERT" ] || return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found: it makes the certificates of KAFKA_SECURITY=1"
  mkdir -p "$1"
  (
    cd "$1"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=leadscore test CA" -keyout ca.key -out ca.pem
    for who in server client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$who.key" -out "$who.csr"
      openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -out "$who.pem" \
        -extfile <(echo "subjectAltName=IP:127.0.0.1,DNS:localhost")
      rm "$who.csr"
    done
  ) >/dev/null 2>&1 || die "could not make certificates in $1"
}

# Writes the settings of node ID into DIR. Arguments: DIR ID VOTERS REPLICATION MIN_ISR HEAP PLAINTEXT_PORT
# CONTROLLER_PORT [SSL_PORT SASL_SSL_PORT]
configure_node() {
  local dir=$1 id=$2 voters=$3 rf=$4 isr=$5 heap=$6 port=$7 cport=$8 sport=${9:-} aport=${10:-}
  mkdir -p "$dir/data"
  echo "$port" >"$dir/kafka.port"
  echo "$cport" >"$dir/controller.port"
  echo "$heap" >"$dir/heap"
  local listeners="PLAINTEXT://127.0.0.1:$port" map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "$sport" ]; then
    listeners+=",SSL://127.0.0.1:$sport,SASL_SSL://127.0.0.1:$aport" map+=",SSL:SSL,SASL_SSL:SASL_SSL"
  fi
  cat >"$dir/server.properties" <<EOF
node.id=$id
process.roles=broker,controller
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
listener.security.protocol.map=$map
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
# Sized for a 2-core machine and a fast start.
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.segment.bytes=16777216
log.cleaner.dedupe.buffer.size=33554432
group.initial.rebalance.delay.ms=0
# A node killed with -9 can register again, and its partitions move away, once its session has expired.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
offsets.topic.num.partitions=4
offsets.topic.replication.factor=$rf
transaction.state.log.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
EOF
  if [ -n "$sport" ]; then
    echo "$sport" >"$dir/ssl.port"
    echo "$aport" >"$dir/sasl_ssl.port"
    tls_files "${TLS_DIR:-$dir/tls}"
    local plain="" user users=${KAFKA_PLAIN_USERS:-}
    for user in ${users//,/ }; do
      plain+=" user_${user%%:*}=\"${user#*:}\""
    done
    # The key as unencrypted PKCS#8, the one form of key that Kafka reads from PEM without a password.
    cat >>"$dir/server.properties" <<EOF
# KAFKA_SECURITY=1: mutual TLS on SSL; SCRAM and PLAIN over TLS on SASL_SSL.
ssl.keystore.type=PEM
ssl.keystore.certificate.chain=$(pem_value "$TLS_CERT")
ssl.keystore.key=$(openssl pkcs8 -topk8 -nocrypt -in "$TLS_KEY" | pem_value)
ssl.truststore.type=PEM
ssl.truststore.certificates=$(pem_value "$TLS_CA")
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain;
EOF
  fi
}

# scram256 or scram512 as Kafka names it.
scram_mechanism() {
  [[ $1 =~ ^scram(256|512)$ ]] || die "unknown SCRAM mechanism '$1' (scram256 or scram512)"
  echo "SCRAM-SHA-${1#scram}"
}

# Formats DIR's storage for a cluster, with the SCRAM users of KAFKA_SCRAM_USERS.
format_node() {
  local dir=$1 cluster_id=$2 user name password mechanism users=${KAFKA_SCRAM_USERS:-} scram=()
  for user in ${users//,/ }; do
    IFS=: read -r name password mechanism <<<"$user"
    mechanism=$(scram_mechanism "${mechanism:-scram512}")
    scram+=(--add-scram "$mechanism=[name=$name,password=$password]")
  done
  run_tool "$dir" kafka.tools.StorageTool format --ignore-formatted --cluster-id="$cluster_id" \
    -c "$dir/server.properties" "${scram[@]}"
}

# The pid in DIR/kafka.pid while it is the broker of DIR (and not a recycled pid); nothing otherwise.
running_pid() {
  local pid cmdline
  pid=$(cat "$1/kafka.pid" 2>/dev/null) || return 0
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
  if [[ $cmdline == *"kafka.Kafka $1/server.properties"* ]]; then
    echo "$pid"
  fi
}

# Starts the node of DIR in the background; wait_node waits for it.
declare -A LOG_START
launch_node() {
  local dir=$1
  [ -z "$(running_pid "$dir")" ] || die "Kafka is already running in $dir (pid $(cat "$dir/kafka.pid"))"
  touch "$dir/kafka.log"
  LOG_START[$dir]=$(stat -c %s "$dir/kafka.log")
  # shellcheck disable=SC2086 # the heap options are words
  java ${KAFKA_HEAP:-$(cat "$dir/heap")} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J" -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
}

# Waits until the node of DIR serves clients (Kafka logs "Kafka Server started" once it has joined the
# cluster), by DEADLINE in seconds since the epoch.
wait_node() {
  local dir=$1 deadline=$2
  while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; do
    if grep -q "Kafka Server started" < <(tail -c +$((LOG_START[$dir] + 1)) "$dir/kafka.log"); then
      return 0
    fi
    sleep 0.2
  done
  # Its errors, or its last lines when it had none.
  tail -c +$((LOG_START[$dir] + 1)) "$dir/kafka.log" | grep -E "^\[.*\] (ERROR|FATAL) " | tail -n 5 | grep . >&2 ||
    tail -n 10 "$dir/kafka.log" >&2
  echo "kafka.sh: Kafka did not start in $dir; see $dir/kafka.log" >&2
  return 1
}

start_node() {
  local dir ports count=2
  dir=$(mkdir -p "$1" && cd "$1" && pwd)
  install_kafka
  # Configured and formatted at the first start, or again after a first start that failed.
  if [ ! -f "$dir/data/meta.properties" ]; then
    [ "${KAFKA_SECURITY:-0}" != 1 ] || count=4
    read -r -a ports <<<"$(free_ports "$count")"
    configure_node "$dir" 1 "1@127.0.0.1:${ports[1]}" 1 1 "-Xms256m -Xmx1g" "${ports[@]}"
    format_node "$dir" "$(new_cluster_id)"
  fi
  launch_node "$dir"
  wait_node "$dir" $(($(date +%s) + ${KAFKA_START_TIMEOUT:-60})) || { kill_node "$dir"; exit 1; }
  echo "127.0.0.1:$(cat "$dir/kafka.port")"
}

start_cluster() {
  local dir n=$2 i
  dir=$(mkdir -p "$1" && cd "$1" && pwd)
  install_kafka
  if [ ! -f "$dir/node-$n/data/meta.properties" ]; then
    local per=2 ports voters="" id rf=$((n < 3 ? n : 3)) pids=() pid
    [ "${KAFKA_SECURITY:-0}" != 1 ] || per=4
    read -r -a ports <<<"$(free_ports $((n * per)))"
    for i in $(seq 1 "$n"); do
      voters+="${voters:+,}$i@127.0.0.1:${ports[(i - 1) * per + 1]}"
    done
    id=$(new_cluster_id)
    for i in $(seq 1 "$n"); do
      TLS_DIR=$dir/tls configure_node "$dir/node-$i" "$i" "$voters" "$rf" $((rf > 1 ? 2 : 1)) \
        "-Xms128m -Xmx512m" "${ports[@]:(i - 1) * per:per}"
      format_node "$dir/node-$i" "$id" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || exit 1; done
  fi
  # All nodes at once: none finishes starting before a majority of the controllers is up.
  local deadline=$(($(date +%s) + ${KAFKA_START_TIMEOUT:-60} * 2)) bootstrap=""
  for i in $(seq 1 "$n"); do
    launch_node "$dir/node-$i"
  done
  for i in $(seq 1 "$n"); do
    wait_node "$dir/node-$i" "$deadline" || { stop_nodes "$dir"/node-*; exit 1; }
    bootstrap+="${bootstrap:+,}127.0.0.1:$(cat "$dir/node-$i/kafka.port")"
  done
  echo "$bootstrap"
}

# SIGTERM to the nodes of all the DIRs at once (a cluster's brokers shut down while its quorum still stands),
# SIGKILL to those still running 20 s later.
stop_nodes() {
  local dir dirs=() pid left
  for dir in "$@"; do
    [ -d "$dir" ] || continue
    dir=$(cd "$dir" && pwd)
    pid=$(running_pid "$dir")
    [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; dirs+=("$dir"); }
  done
  for _ in $(seq 1 200); do
    left=""
    for dir in "${dirs[@]}"; do left+=$(running_pid "$dir"); done
    [ -n "$left" ] || break
    sleep 0.1
  done
  for dir in "$@"; do kill_node "$dir"; done
}

kill_node() {
  local dir pid
  [ -d "$1" ] || return 0
  dir=$(cd "$1" && pwd)
  pid=$(running_pid "$dir")
  if [ -n "$pid" ]; then
    kill -9 "$pid" 2>/dev/null || true
    # Until it has let go of its ports and files.
    for _ in $(seq 1 100); do
      [ -n "$(running_pid "$dir")" ] || break
      sleep 0.05
    done
  fi
  rm -f "$dir/kafka.pid"
}

create_user() {
  local dir mechanism
  dir=$(cd "$1" && pwd)
  mechanism=$(scram_mechanism "$4")
  [ -n "$(running_pid "$dir")" ] || die "Kafka is not running in $dir"
  install_kafka
  run_tool "$dir" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$(cat "$dir/kafka.port")" \
    --alter --entity-type users --entity-name "$2" --add-config "$mechanism=[password=$3]"
}

case "${1:-}" in
  install) install_kafka ;;
  start) start_node "${2:?usage: kafka.sh start DIR}" ;;
  stop) stop_nodes "${2:?usage: kafka.sh stop DIR}" ;;
  kill) kill_node "${2:?usage: kafka.sh kill DIR}" ;;
  start-cluster) start_cluster "${2:?usage: kafka.sh start-cluster DIR [N]}" "${3:-3}" ;;
  stop-cluster) stop_nodes "${2:?usage: kafka.sh stop-cluster DIR}"/node-* ;;
  user) create_user "${2:?usage: kafka.sh user DIR NAME PASSWORD [MECHANISM]}" "${3:?NAME}" "${4:?PASSWORD}" "${5:-scram512}" ;;
  *)
    echo "usage: $0 install | start DIR | stop DIR | kill DIR | start-cluster DIR [N] | stop-cluster DIR" \
      "| user DIR NAME PASSWORD [MECHANISM]" >&2
    exit 2
    ;;
esac
