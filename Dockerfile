# syntax=docker/dockerfile:1
#
# One image runs every Herald role: `serve` with HERALD_ROLES=api, worker,
# stats (or all three), `migrate`, `tenant …`, `healthcheck`.
#
#   docker build -t herald .
#   docker run --rm -p 8080:8080 -v herald-data:/var/lib/herald herald
#
# The dependency layer is built from cargo-chef's recipe (only Cargo.toml and
# Cargo.lock files), so a source change rebuilds Herald's crates, not the
# dependencies.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json --bin herald

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin herald
COPY . .
RUN cargo build --release --locked --bin herald \
    && install -D -m 0755 target/release/herald /out/herald \
    && install -d -m 0750 /out/data

# distroless/cc: glibc, libgcc, CA certificates and tzdata, no shell, no package
# manager; `nonroot` runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/herald /usr/local/bin/herald
COPY --from=builder --chown=65532:65532 /out/data /var/lib/herald
USER 65532:65532
WORKDIR /var/lib/herald
ENV HERALD_LISTEN_ADDR=0.0.0.0:8080 \
    HERALD_DATABASE_URL=sqlite:///var/lib/herald/herald.db \
    HERALD_LOG_FORMAT=json
EXPOSE 8080 9464
VOLUME ["/var/lib/herald"]
# The API's /api/v1/health (which checks the database); a process without the
# api role answers on HERALD_METRICS_ADDR's /health instead.
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 \
    CMD ["herald", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["herald"]
CMD ["serve"]
