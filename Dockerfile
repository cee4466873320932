# syntax=docker/dockerfile:1
#
# The Weir image: `weir-broker` (the entrypoint) and the `weir` tool, on Debian slim.
#
#   docker build -t weir:0.1.0 .
#   docker run --rm -p 9092:9092 -p 9093:9093 -p 9644:9644 -v weir-data:/var/lib/weir weir:0.1.0
#
# With no arguments the container is a single node (controller and broker) that listens on
# every interface and advertises localhost, so `kcat -b localhost:9092` works through the
# published ports. A cluster passes its node id, voters and advertised addresses as flags,
# which override the WEIR_* defaults below (the Helm chart in helm/weir does).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- planner: the dependency recipe, which changes only when a manifest or the lockfile does
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- builder: dependencies first (a cached layer), then the workspace
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p weir-broker -p weir-tools --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p weir-broker -p weir-tools \
    && install -D -m 0755 target/release/weir-broker target/release/weir -t /out

# ---- runtime: glibc is all the binaries need (librdkafka, for `weir perf --protocol kafka`,
#      is built from source and linked statically, without TLS or SASL)
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG WEIR_UID=10001
RUN groupadd --system --gid ${WEIR_UID} weir \
    && useradd --system --uid ${WEIR_UID} --gid weir --home-dir /var/lib/weir --no-create-home \
        --shell /usr/sbin/nologin weir \
    && install -d -o weir -g weir -m 0750 /var/lib/weir
COPY --from=builder /out/ /usr/local/bin/

# Single-node defaults for `docker run`; flags (and --config) override them.
ENV WEIR_DATA_DIR=/var/lib/weir/data \
    WEIR_KAFKA_ADDR=0.0.0.0:9092 \
    WEIR_GRPC_ADDR=0.0.0.0:9093 \
    WEIR_INTERNAL_ADDR=0.0.0.0:9094 \
    WEIR_HTTP_ADDR=0.0.0.0:9644 \
    WEIR_ADVERTISED_KAFKA_ADDR=localhost:9092 \
    WEIR_ADVERTISED_GRPC_ADDR=localhost:9093 \
    WEIR_ADVERTISED_INTERNAL_ADDR=localhost:9094

# Kafka, gRPC, internal (Raft and replication), HTTP (/metrics, /healthz, /readyz).
EXPOSE 9092 9093 9094 9644
VOLUME ["/var/lib/weir"]
WORKDIR /var/lib/weir
USER ${WEIR_UID}:${WEIR_UID}
# The broker handles SIGTERM itself (a controlled shutdown), so it runs as PID 1 directly.
STOPSIGNAL SIGTERM
ENTRYPOINT ["weir-broker"]
