#!/usr/bin/env bash
# Builds Apicurio Registry's server from Maven Central into a cache and runs it without docker, with its
# storage in H2 (no Kafka, no database server), on a free loopback port. It serves the Confluent Schema
# Registry API (v7) under URL/apis/ccompat/v7, which is the base URL that `start` prints.
#
#   scripts/registry.sh install     build Apicurio Registry once into $LEADSCORE_TOOLS
#                                   (default ~/.cache/leadscore/tools)
#   scripts/registry.sh start DIR   start a registry whose port, pid, data and log live in DIR; prints its
#                                   Confluent-compatible base URL, http://127.0.0.1:PORT/apis/ccompat/v7.
#                                   The first start picks the port; later ones (after stop or kill) reuse it
#                                   and the schemas stored in DIR/data, so ids stay the same.
#   scripts/registry.sh stop DIR    stop the registry of DIR (SIGTERM, SIGKILL after 20 s)
#   scripts/registry.sh kill DIR    kill -9 the registry of DIR
#
# DIR holds registry.port, registry.url (the printed URL), registry.pid, registry.log and data/ (H2 files).
# At every start: REGISTRY_HEAP (default "-Xms64m -Xmx512m") and REGISTRY_START_TIMEOUT (seconds, default 60).
# REGISTRY_IN_MEMORY=1 keeps the schemas in memory only: each start begins empty.
#
# Apicurio publishes its server to Maven Central only as a jar of classes, not runnable: registry/pom.xml
# beside this script turns it into the runnable Quarkus application, as Apicurio's own build does (see there).
# Schema ids are Apicurio's content ids: the same schema text under two subjects has one id, as in Confluent's.
set -euo pipefail

APICURIO_VERSION=2.4.2.Final # the newest whose jars Maven Central serves (2.5, 2.6 and 3.x lack some)
QUARKUS_VERSION=2.16.4.Final # the Quarkus that Apicurio $APICURIO_VERSION is built with
TOOLS=${LEADSCORE_TOOLS:-$HOME/.cache/leadscore/tools}
APP=$TOOLS/apicurio-registry-$APICURIO_VERSION
HERE=$(cd "$(dirname "$0")" && pwd)
POM=$HERE/registry/pom.xml
API=/apis/ccompat/v7

die() {
  echo "registry.sh: $*" >&2
  exit 1
}

install_registry() {
  command -v java >/dev/null 2>&1 ||
    die "java not found: Apicurio Registry $APICURIO_VERSION needs Java 17 (Debian: apt-get install openjdk-17-jre-headless)"
  if [ -f "$APP/registry.jar" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: it builds Apicurio Registry $APICURIO_VERSION from Maven Central (Debian: apt-get install maven)"
  mkdir -p "$TOOLS"
  echo "installing Apicurio Registry $APICURIO_VERSION into $TOOLS (230 MB from Maven Central into $TOOLS/m2, a 130 MB build kept; 30-70 s)" >&2
  # Built in a temporary directory, renamed when complete: an interrupted install leaves no half of it.
  tmp=$(mktemp -d "$TOOLS/.apicurio-registry-$APICURIO_VERSION.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mvn -B -f "$POM" -Dmaven.repo.local="$TOOLS/m2" -Dapicurio.version="$APICURIO_VERSION" \
    -Dquarkus.version="$QUARKUS_VERSION" -Dbuild.dir="$tmp/build" package >"$tmp/mvn.log" 2>&1 ||
    { grep -E '^\[ERROR\]' "$tmp/mvn.log" | head -n 20 >&2; die "could not build Apicurio Registry $APICURIO_VERSION with $POM"; }
  mkdir "$tmp/app"
  # The runner finds its jars through its manifest, as lib/NAME.jar beside it.
  mv "$tmp/build/apicurio-registry-server-0-runner.jar" "$tmp/app/registry.jar"
  mv "$tmp/build/lib" "$tmp/app/lib"
  # When another install won the race, its copy stays and the trap removes this one.
  mv -T "$tmp/app" "$APP" 2>/dev/null || true
  trap - EXIT
  rm -rf "$tmp"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The pid in DIR/registry.pid while it is the registry of DIR (and not a recycled pid); nothing otherwise.
running_pid() {
  local pid cmdline
  pid=$(cat "$1/registry.pid" 2>/dev/null) || return 0
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
  if [[ $cmdline == *"-Dleadscore.registry.dir=$1 "* ]]; then
    echo "$pid"
  fi
}

# 0 when URL answers GET with 200.
answers() {
  python3 -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)' "$1"
}

start_registry() {
  local dir port url datasource deadline
  dir=$(mkdir -p "$1" && cd "$1" && pwd)
  install_registry
  [ -z "$(running_pid "$dir")" ] || die "the registry is already running in $dir (pid $(cat "$dir/registry.pid"))"
  [ -f "$dir/registry.port" ] || free_port >"$dir/registry.port"
  port=$(cat "$dir/registry.port")
  url=http://127.0.0.1:$port$API
  echo "$url" >"$dir/registry.url"
  if [ "${REGISTRY_IN_MEMORY:-0}" = 1 ]; then
    datasource="jdbc:h2:mem:registry_db"
  else
    mkdir -p "$dir/data"
    datasource="jdbc:h2:file:$dir/data/registry;WRITE_DELAY=0"
  fi
  touch "$dir/registry.log"
  echo "--- start $(date -u +%FT%TZ)" >>"$dir/registry.log"
  # Apicurio reads its settings from these variables (application.properties of the app jar); the
  # system properties are Quarkus's own.
  # shellcheck disable=SC2086 # the heap options are words
  REGISTRY_DATASOURCE_URL=$datasource HTTP_PORT=$port \
    java ${REGISTRY_HEAP:--Xms64m -Xmx512m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dleadscore.registry.dir="$dir" -Dquarkus.http.host=127.0.0.1 \
    -Dquarkus.http.port="$port" -jar "$APP/registry.jar" </dev/null >>"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  # Ready when the Confluent API answers (Quarkus logs "Listening on" a little before).
  deadline=$(($(date +%s) + ${REGISTRY_START_TIMEOUT:-60}))
  while ! answers "$url/subjects"; do
    if [ "$(date +%s)" -ge "$deadline" ] || [ -z "$(running_pid "$dir")" ]; then
      grep -E " (ERROR|FATAL) |Exception" "$dir/registry.log" | tail -n 5 >&2 || tail -n 10 "$dir/registry.log" >&2
      kill_registry "$dir"
      die "the registry did not start in $dir; see $dir/registry.log"
    fi
    sleep 0.2
  done
  echo "$url"
}

# Sends SIGNAL to the registry of DIR, then waits up to TRIES times DELAY seconds for it to exit.
signal_registry() {
  local dir pid
  dir=$(cd "$1" && pwd)
  pid=$(running_pid "$dir")
  [ -n "$pid" ] || return 0
  kill "-$2" "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$3"); do
    [ -n "$(running_pid "$dir")" ] || return 0
    sleep "$4"
  done
}

stop_registry() {
  [ -d "$1" ] || return 0
  signal_registry "$1" TERM 200 0.1
  kill_registry "$1"
}

kill_registry() {
  [ -d "$1" ] || return 0
  signal_registry "$1" KILL 100 0.05
  rm -f "$1/registry.pid"
}

case "${1:-}" in
  install) install_registry ;;
  start) start_registry "${2:?usage: registry.sh start DIR}" ;;
  stop) stop_registry "${2:?usage: registry.sh stop DIR}" ;;
  kill) kill_registry "${2:?usage: registry.sh kill DIR}" ;;
  *)
    echo "usage: $0 install | start DIR | stop DIR | kill DIR" >&2
    exit 2
    ;;
esac
