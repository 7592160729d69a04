# Builds the procinst binary and runs it on a slim Debian.
# Rust at least as new as Cargo.lock's dependencies need (refinery 0.10
# needs 1.92); the same release the project is built and tested with.
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: it is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/domain.rs \
    && cargo build --release --locked --bin procinst \
    && rm -rf src benches

COPY src src
COPY migrations migrations
COPY benches benches
# Newer than the placeholders' build stamps, so cargo rebuilds the crate.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin procinst

FROM debian:bookworm-slim
# CA certificates for amqps:// and PostgreSQL TLS (sslmode=verify-full).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 procinst
COPY --from=build /src/target/release/procinst /usr/local/bin/procinst
USER procinst
EXPOSE 9464
# `procinst health` asks /readyz at PROCINST_HTTP_ADDR; exit 0 or 1.
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 \
    CMD ["procinst", "health"]
ENTRYPOINT ["procinst"]
CMD ["run"]
