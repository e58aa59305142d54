#!/usr/bin/env bash
# The kill -9 soak: three `leadscore run` processes in one consumer group on Apache Kafka (a node started
# by scripts/kafka.sh for the run, on free loopback ports), a stream of EVENTS events produced in CYCLES
# chunks, and during each chunk, once the members have consumed a random share (0 to 70%) of it, a random
# member killed with SIGKILL and restarted after a random pause of up to 8 s (sometimes before its session
# of 6 s has expired, sometimes after the survivors took over its partitions). Then the final state of
# every contact and every published output are checked against the offline model (`leadscore score`), each
# partition must have been owned by one process at a time (from the processes' logs), and it prints
#
#   soak: cycles = …, events = …, lost = 0, double-counted = 0, duplicate outputs = N
#
#   scripts/soak.sh [CYCLES] [EVENTS] [SEED]      defaults: 100 cycles, 1000000 events, seed 1
#
# The topics have 8 partitions (LEADSCORE_SOAK_PARTITIONS overrides it). The test suite runs a short
# version (5 cycles over 20 000 events) of the same test, tests/soak.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/leadscore/target}
export LEADSCORE_SOAK_CYCLES=${1:-100}
export LEADSCORE_SOAK_EVENTS=${2:-1000000}
export LEADSCORE_SOAK_SEED=${3:-1}
# Java and Maven fetch Apache Kafka once into the cache.
scripts/setup --tests
scripts/kafka.sh install
cargo test --release --test soak -- --ignored --exact kill_9_soak --nocapture
