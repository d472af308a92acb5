# syntax=docker/dockerfile:1
# Both services from one build: `--target vault` or `--target api`. Multi-stage: the toolchain
# stays in the builder; each runtime image holds one binary, runs as an unprivileged user, and
# carries only what the healthcheck needs (curl) beside the C runtime.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
# aws-lc-rs builds its C and assembly with cmake and a C compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p strongbox-vault -p strongbox-api \
 && mkdir -p /out \
 && cp target/release/strongbox-vault target/release/strongbox-api /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 strongbox \
 && useradd --system --uid 10001 --gid strongbox --no-create-home --shell /usr/sbin/nologin strongbox \
 && mkdir -p /certs && chown strongbox:strongbox /certs
USER 10001:10001

FROM runtime AS vault
COPY --from=builder /out/strongbox-vault /usr/local/bin/strongbox-vault
EXPOSE 7080 7081
HEALTHCHECK --interval=10s --timeout=3s CMD ["curl", "-fsS", "http://127.0.0.1:7081/healthz"]
ENTRYPOINT ["strongbox-vault"]
CMD ["serve"]

FROM runtime AS api
COPY --from=builder /out/strongbox-api /usr/local/bin/strongbox-api
EXPOSE 7070 7071
HEALTHCHECK --interval=10s --timeout=3s CMD ["curl", "-fsS", "http://127.0.0.1:7071/healthz"]
ENTRYPOINT ["strongbox-api"]
CMD ["serve"]
