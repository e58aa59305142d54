#!/usr/bin/env bash
# The kill -9 soak: two `leadscore run` processes in one consumer group on librdkafka's mock cluster, a
# stream of EVENTS events produced in CYCLES chunks, and after each chunk a random member killed with
# SIGKILL and restarted after a random pause. Then the final state of every contact and every published
# output are checked against the offline model (`leadscore score`), and it prints
#
#   soak: cycles = …, events = …, lost = 0, double-counted = 0, duplicate outputs = N
#
#   scripts/soak.sh [CYCLES] [EVENTS] [SEED]      defaults: 100 cycles, 1000000 events, seed 1
#
# The mock cluster keeps at most 5 MB per partition, and the changelog takes about 1 KB per event, so the
# topics get one partition per 3 000 events (LEADSCORE_SOAK_PARTITIONS overrides it) and each generated
# contact is split into one per 30 000 events, so that no hot contact overfills its partition; the test
# fails rather than blame leadscore if the broker dropped records anyway.
#
# The test suite runs a short version (5 cycles over 20 000 events) of the same test, tests/soak.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/leadscore/target}
export LEADSCORE_SOAK_CYCLES=${1:-100}
export LEADSCORE_SOAK_EVENTS=${2:-1000000}
export LEADSCORE_SOAK_SEED=${3:-1}
scripts/setup
cargo test --release --test soak -- --ignored --exact kill_9_soak --nocapture
