# idemproxy container image: a static-ish, non-root runtime on distroless.
#
#   docker build -t idemproxy .
#   docker run --rm -v $PWD/config:/etc/idemproxy:ro -v idemproxy-state:/var/lib/idemproxy idemproxy
#
# The config is mounted at /etc/idemproxy/idemproxy.toml. As a sidecar (same network namespace
# as the tool, e.g. a Kubernetes pod) keep the default loopback listener; a listener on another
# address refuses to start without proxy.auth_token_env/auth_token_file or proxy.allow_clients.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin idemproxy && strip target/release/idemproxy \
    && mkdir -p /out/var/lib/idemproxy /out/etc/idemproxy

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/idemproxy /usr/local/bin/idemproxy
COPY --from=build --chown=65532:65532 /out/var/lib/idemproxy /var/lib/idemproxy
COPY config/idemproxy.toml /etc/idemproxy/idemproxy.toml
USER 65532:65532
ENV IDEMPROXY__DEDUPE__PATH=/var/lib/idemproxy/dedupe.redb
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=4s --retries=3 \
    CMD ["/usr/local/bin/idemproxy", "healthcheck", "--admin", "127.0.0.1:9090"]
ENTRYPOINT ["/usr/local/bin/idemproxy"]
CMD ["--config", "/etc/idemproxy/idemproxy.toml"]
