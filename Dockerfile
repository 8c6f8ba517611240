# c300x-bridge add-on image (home-assistant.md §4.6). The Supervisor's local build and the publishing
# workflow (.github/workflows/publish.yaml) both use this file, with BuildKit (docker buildx) or podman.
#
# The builder stage always runs on the build machine's own arch ($BUILDPLATFORM) and cross-compiles
# to $TARGETARCH: a minimal static FFmpeg + x264 + Speex from Debian's source packages
# (addon/build-codecs.sh), then the release binary (addon/build-binary.sh) — no emulation.
# The image itself is just that binary and the glibc files it loads: no distribution, no shell.
#
#   docker buildx build --platform linux/arm64 --build-arg BUILD_ARCH=aarch64 .
#   podman build --platform linux/arm64 --build-arg BUILD_ARCH=aarch64 --build-arg BUILDPLATFORM=linux/amd64 .
#     (podman 4 does not set BUILDPLATFORM itself; BUILDER_IMAGE=<a Rust 1.95 Debian 12 image> for
#     an offline builder). BUILD_ARCH (amd64 | aarch64) only names the arch in the io.hass.arch label.
# The licence label: x264 (the simulator's encoder, so `demo` works in the image) makes the
# binary GPL-2.0-or-later.
# The `prebuilt` target packs a root filesystem made on the host by addon/build-binary.sh
# (addon/test-image.sh and test-arm64.sh use it; nothing runs inside the build).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm

FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS builder
# TARGETARCH comes from BuildKit/buildah (amd64, arm64); BUILD_ARCH (amd64, aarch64) is the
# Supervisor's own build argument, used when TARGETARCH is not set.
ARG TARGETARCH
ARG BUILD_ARCH=amd64
WORKDIR /src
COPY addon/build-binary.sh addon/build-codecs.sh addon/
RUN addon/build-binary.sh deps "${TARGETARCH:-$BUILD_ARCH}" && rm -rf /var/lib/apt/lists/*
# Its own layer: rebuilt only when build-codecs.sh (its flags) changes.
RUN C300X_CACHE=/var/cache/c300x addon/build-codecs.sh "${TARGETARCH:-$BUILD_ARCH}" /opt/codecs \
 && rm -rf /var/cache/c300x
COPY . .
RUN C300X_CODECS=/opt/codecs CARGO_TARGET_DIR=/src/target \
    addon/build-binary.sh "${TARGETARCH:-$BUILD_ARCH}" /rootfs

# (podman/buildah 4 reuse this stage's cached layers whatever BUILD_ARCH/BUILD_VERSION are: build it
# with --no-cache there. BuildKit keys its cache on them.)
FROM scratch AS runtime-base
ARG BUILD_ARCH
ARG BUILD_VERSION=0.1.0
LABEL io.hass.type="app" \
      io.hass.arch="${BUILD_ARCH}" \
      io.hass.version="${BUILD_VERSION}" \
      org.opencontainers.image.title="c300x-bridge" \
      org.opencontainers.image.description="BTicino Classe 300X intercom for Home Assistant" \
      org.opencontainers.image.licenses="GPL-2.0-or-later"
# Home Assistant ingress and the Supervisor's watchdog use this fixed internal port (config.yaml
# `ingress_port`), a second listener of the same web server: changing http_port never breaks them.
ENV C300X_INGRESS_PORT=8099
# The Supervisor writes the add-on options to /data/options.json; any other command can be given
# instead, e.g. `docker run --network host <image> demo`.
ENTRYPOINT ["/usr/bin/c300x-bridge"]
CMD ["--options", "/data/options.json", "run"]

FROM runtime-base AS prebuilt
COPY rootfs/ /

FROM runtime-base AS runtime
COPY --from=builder /rootfs/ /
