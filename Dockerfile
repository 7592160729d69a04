# Builds the procinst binary and runs it on a slim Debian.
FROM rust:1.92-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
RUN cargo build --release --locked --bin procinst

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 procinst
COPY --from=build /src/target/release/procinst /usr/local/bin/procinst
USER procinst
EXPOSE 9464
ENTRYPOINT ["procinst"]
CMD ["run"]
