# Minimal image for now (a later issue hardens it: distroless/static, HEALTHCHECK).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/idemproxy

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home idemproxy
COPY --from=build /src/target/release/idemproxy /usr/local/bin/idemproxy
COPY config/idemproxy.toml /etc/idemproxy/idemproxy.toml
USER 10001
# Inside a container the listener must not be loopback-only; override with care.
ENV IDEMPROXY__PROXY__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/idemproxy"]
CMD ["--config", "/etc/idemproxy/idemproxy.toml"]
