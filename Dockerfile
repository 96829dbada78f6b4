# Container images of pd-operator and pd-scanner: one static x86_64 musl binary each on an
# empty base (no shell, no libc, no package manager), running as UID/GID 65532.
#
# Two ways to build, one file:
#
# 1. From source (docker buildx / BuildKit, e.g. GitHub Actions): the `builder` stage compiles
#    both binaries in the official Rust image.
#
#      docker buildx build --target pd-operator -t ghcr.io/prompt-defenders/pd-operator:dev .
#      docker buildx build --target pd-scanner  -t ghcr.io/prompt-defenders/pd-scanner:dev .
#
# 2. From binaries built beforehand (`.ci/images`, machines that cannot pull base images):
#    a named build context `binaries` (a directory holding `pd-operator` and `pd-scanner`)
#    replaces the stage of that name, so nothing reaches the builder stage and no base image
#    is pulled. Both buildah (1.28+) and BuildKit give a named context precedence over a stage.
#
#      cargo build --locked --profile image --target x86_64-unknown-linux-musl \
#        -p pd-operator -p pd-scanner --bins
#      buildah bud --target pd-scanner --build-context binaries=DIR --pull=never \
#        -t ghcr.io/prompt-defenders/pd-scanner:dev .
#
# The images hold no CA certificates on purpose: the operator talks only to the Kubernetes API,
# and kube-rs verifies it against the service-account CA file
# (/var/run/secrets/kubernetes.io/serviceaccount/ca.crt), never the system trust store; the
# scanner makes no outbound connections.

ARG RUST_VERSION=1.95
ARG VERSION=0.1.0
# The repository the image was built from (OCI label `source`); empty unless given: there is
# no public repository yet.
ARG SOURCE=
ARG REVISION=unknown

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
# musl-gcc compiles the C parts (ring, mimalloc) for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY config/ config/
COPY engine/ engine/
COPY scanner/ scanner/
COPY operator/ operator/
# A workspace member: cargo needs its manifest even though no image contains it.
COPY e2e/ e2e/
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile image --target x86_64-unknown-linux-musl \
      -p pd-operator -p pd-scanner --bins \
 && mkdir /out \
 && cp target/x86_64-unknown-linux-musl/image/pd-operator \
       target/x86_64-unknown-linux-musl/image/pd-scanner /out/ \
 && cp /etc/ssl/certs/ca-certificates.crt /out/

# The two binaries at the root. Overridden by `--build-context binaries=DIR`.
FROM scratch AS binaries
COPY --from=builder /out/ /

FROM scratch AS pd-operator
ARG VERSION
ARG SOURCE
ARG REVISION
LABEL org.opencontainers.image.title="pd-operator" \
      org.opencontainers.image.description="Prompt Defenders operator: reconciles Tenant, RulePack and ScanPolicy resources into scanner deployments" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binaries /pd-operator /usr/local/bin/pd-operator
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/pd-operator"]
CMD ["run"]

FROM scratch AS pd-scanner
ARG VERSION
ARG SOURCE
ARG REVISION
LABEL org.opencontainers.image.title="pd-scanner" \
      org.opencontainers.image.description="Prompt Defenders scanner: prompt-security scan service" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binaries /pd-scanner /usr/local/bin/pd-scanner
# CA certificates for webhook deliveries over HTTPS (`serve --webhooks`); nothing else.
COPY --from=binaries /ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pd-scanner"]
# The operator's Deployment always passes `serve ...`; a bare run prints the usage.
CMD ["--help"]
