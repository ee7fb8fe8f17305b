# syntax=docker/dockerfile:1
# Two images from one build, both on Debian 12 (bookworm) with glibc, run on distroless/cc as
# the nonroot user (UID 65532), no shell:
#
#   metrics-app (the last stage, so the default target): the service
#     docker build --build-arg GIT_COMMIT=$(git rev-parse --short HEAD) -t metrics-app:dev .
#   appctl: the CLI, for the chart's scheduled health check (healthCheck, docs/diagnose.md)
#     docker build --target appctl --build-arg GIT_COMMIT=$(git rev-parse --short HEAD) -t appctl:dev .
#
# BuildKit builds only the stages a target needs: the default build never compiles appctl.

ARG RUST_VERSION=1.95.0

# --- dependencies -----------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS deps
# make: the jemalloc allocator is built from source (the slim image has gcc but not make).
RUN apt-get update \
 && apt-get install -y --no-install-recommends make=4.3-4.1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, with placeholder sources, so editing the code reuses this layer.
COPY Cargo.toml Cargo.lock ./
COPY crates/metrics-app/Cargo.toml crates/metrics-app/build.rs crates/metrics-app/
COPY crates/appctl/Cargo.toml crates/appctl/
COPY crates/topology/Cargo.toml crates/topology/
COPY crates/testkit/Cargo.toml crates/testkit/
# The workspace-hack crate (cargo-hakari) is tiny and needed as it is: copied whole.
COPY crates/workspace-hack crates/workspace-hack
COPY bench/baseline/Cargo.toml bench/baseline/
RUN mkdir -p crates/metrics-app/src crates/appctl/src crates/topology/src crates/testkit/src bench/baseline/src \
 && echo 'fn main() {}' > crates/metrics-app/src/main.rs \
 && touch crates/metrics-app/src/lib.rs crates/appctl/src/lib.rs crates/topology/src/lib.rs crates/testkit/src/lib.rs \
 && echo 'fn main() {}' > crates/appctl/src/main.rs \
 && echo 'fn main() {}' > bench/baseline/src/main.rs

# --- build metrics-app ------------------------------------------------------------------------
FROM deps AS build
RUN cargo build --release --locked -p metrics-app \
 && rm -rf crates/metrics-app/src
COPY crates/metrics-app/src crates/metrics-app/src
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
# touch: the placeholder's build output is newer than the copied sources' mtimes.
RUN touch crates/metrics-app/src/main.rs crates/metrics-app/src/lib.rs \
 && cargo build --release --locked -p metrics-app \
 && cp target/release/metrics-app /metrics-app

# --- build appctl -----------------------------------------------------------------------------
FROM deps AS build-appctl
RUN cargo build --release --locked -p appctl \
 && rm -rf crates/appctl/src
COPY crates/appctl/src crates/appctl/src
RUN touch crates/appctl/src/main.rs crates/appctl/src/lib.rs \
 && cargo build --release --locked -p appctl \
 && cp target/release/appctl /appctl

# --- run: appctl (docker build --target appctl) -----------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS appctl
ARG GIT_COMMIT=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="appctl" \
      org.opencontainers.image.description="metrics-app's CLI: appctl diagnose for the scheduled outside-in health check" \
      org.opencontainers.image.source="https://github.com/metrics-app/metrics-app" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build-appctl /appctl /usr/local/bin/appctl
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/appctl"]

# --- run: metrics-app (the last stage: the default target) ------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS metrics-app
ARG GIT_COMMIT=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="metrics-app" \
      org.opencontainers.image.description="The /counter service: correct, fast, observable" \
      org.opencontainers.image.source="https://github.com/metrics-app/metrics-app" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /metrics-app /usr/local/bin/metrics-app
USER 65532:65532
# 8080: the public listener; 9090: probes and metrics (management listener).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/metrics-app"]
