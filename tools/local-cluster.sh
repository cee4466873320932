#!/usr/bin/env bash
# A local three-broker Weir cluster: three weir-broker processes on this machine, each a
# controller voter and a broker, on 127.0.0.1.
#
#   tools/local-cluster.sh [DATA_ROOT]      (default: ./weir-data)
#
# Node N (1, 2, 3) keeps its data in DATA_ROOT/node-N and its log in DATA_ROOT/node-N.log, and
# listens on
#   Kafka     9092 + 10*(N-1)    (9092, 9102, 9112)
#   gRPC      9093 + 10*(N-1)    (9093, 9103, 9113)
#   internal  9094 + 10*(N-1)    (9094, 9104, 9114: Raft, replication, heartbeats)
#   HTTP      9644 + 10*(N-1)    (9644, 9654, 9664: /metrics, /healthz, /readyz)
# so node 1 is where a single default node would be. Topics get 3 replicas and
# min.insync.replicas=2 unless they say otherwise (set WEIR_DEFAULT_REPLICATION_FACTOR,
# WEIR_MIN_INSYNC_REPLICAS or any other WEIR_* variable to change the nodes' configuration).
#
# The broker binary is WEIR_BROKER_BIN if set, else the release build of this repository
# (built first with `cargo build --release -p weir-broker`, a no-op when it is up to date).
# The script waits until all three serve, prints how to connect, and stops them all cleanly
# on Ctrl-C (or when one of them exits). Running it again on the same DATA_ROOT restarts the
# same cluster with its data.
set -euo pipefail

DATA_ROOT=${1:-./weir-data}
NODES=(1 2 3)
START_TIMEOUT_SECS=60

die() {
    echo "local-cluster: $*" >&2
    exit 1
}

# The weir-broker to run.
broker_binary() {
    if [[ -n "${WEIR_BROKER_BIN:-}" ]]; then
        [[ -x "$WEIR_BROKER_BIN" ]] || die "WEIR_BROKER_BIN=$WEIR_BROKER_BIN is not an executable"
        echo "$WEIR_BROKER_BIN"
        return
    fi
    local repo target
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    echo "local-cluster: building weir-broker (cargo build --release -p weir-broker)" >&2
    (cd "$repo" && cargo build --release -p weir-broker --bin weir-broker >&2) \
        || die "the build failed; fix it, or set WEIR_BROKER_BIN to a weir-broker binary"
    target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [[ -x "$target/release/weir-broker" ]] || die "no weir-broker in $target/release"
    echo "$target/release/weir-broker"
}

port() { # port BASE NODE
    echo $(($1 + 10 * ($2 - 1)))
}

BINARY=$(broker_binary)
mkdir -p "$DATA_ROOT"
DATA_ROOT=$(cd "$DATA_ROOT" && pwd)

VOTERS=""
for n in "${NODES[@]}"; do
    VOTERS+="${VOTERS:+,}$n@127.0.0.1:$(port 9094 "$n")"
done

# How many times node N's log says it is live: the log files are appended to, so only lines
# added by this run count.
live_count() {
    local count
    count=$(grep -c "broker is live" "$DATA_ROOT/node-$1.log" 2>/dev/null) || true
    echo "${count:-0}"
}
LIVE_BEFORE=()
for n in "${NODES[@]}"; do
    LIVE_BEFORE+=("$(live_count "$n")")
done

PIDS=()
stop_all() {
    trap - INT TERM EXIT
    local pid
    if ((${#PIDS[@]} > 0)); then
        echo "local-cluster: stopping the brokers"
        for pid in "${PIDS[@]}"; do
            kill -TERM "$pid" 2>/dev/null || true
        done
        for pid in "${PIDS[@]}"; do
            wait "$pid" 2>/dev/null || true
        done
    fi
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

for n in "${NODES[@]}"; do
    mkdir -p "$DATA_ROOT/node-$n"
    WEIR_DEFAULT_REPLICATION_FACTOR=${WEIR_DEFAULT_REPLICATION_FACTOR:-3} \
    WEIR_MIN_INSYNC_REPLICAS=${WEIR_MIN_INSYNC_REPLICAS:-2} \
    NO_COLOR=1 \
        "$BINARY" \
        --node-id "$n" \
        --data-dir "$DATA_ROOT/node-$n" \
        --kafka-addr "127.0.0.1:$(port 9092 "$n")" \
        --grpc-addr "127.0.0.1:$(port 9093 "$n")" \
        --internal-addr "127.0.0.1:$(port 9094 "$n")" \
        --http-addr "127.0.0.1:$(port 9644 "$n")" \
        --controller-voters "$VOTERS" \
        >>"$DATA_ROOT/node-$n.log" 2>&1 &
    PIDS+=($!)
    echo "local-cluster: node $n started (pid $!, log $DATA_ROOT/node-$n.log)"
done

# Each node logs "broker is live" once it has joined the quorum and caught up with the
# metadata log.
deadline=$((SECONDS + START_TIMEOUT_SECS))
for i in "${!NODES[@]}"; do
    n=${NODES[$i]}
    until (($(live_count "$n") > ${LIVE_BEFORE[$i]})); do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            tail -n 20 "$DATA_ROOT/node-$n.log" >&2 || true
            die "node $n exited; its log is $DATA_ROOT/node-$n.log"
        fi
        ((SECONDS < deadline)) || die "node $n is not serving after ${START_TIMEOUT_SECS}s; see $DATA_ROOT/node-$n.log"
        sleep 0.2
    done
done

cat <<EOF

Weir: three brokers serving (data and logs in $DATA_ROOT).

  bootstrap servers   127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112
  gRPC API            127.0.0.1:9093, 127.0.0.1:9103, 127.0.0.1:9113
  metrics             http://127.0.0.1:9644/metrics (9654, 9664)

  kcat -L -b 127.0.0.1:9092                        # brokers, leaders, replicas, ISRs
  echo hello | kcat -P -b 127.0.0.1:9092 -t demo   # a topic with 3 replicas
  kcat -C -b 127.0.0.1:9092 -t demo -o beginning -e

Ctrl-C stops all three.
EOF

# Runs until Ctrl-C, or until one broker exits (then the others are stopped too).
while true; do
    for i in "${!NODES[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            wait "${PIDS[$i]}" && status=0 || status=$?
            die "node ${NODES[$i]} exited with status $status; its log is $DATA_ROOT/node-${NODES[$i]}.log"
        fi
    done
    sleep 1
done
