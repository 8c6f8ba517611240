# c300x-bridge add-on image (home-assistant.md §4.6): an explicit FROM (the Supervisor no longer
# passes BUILD_FROM). Both images are overridable so the image can be built offline:
#   podman build --build-arg BASE_IMAGE=localhost/bookworm-minbase:local .
# The `prebuilt` target packs a binary built on the host (addon/test-image.sh uses it).
ARG BUILD_ARCH=amd64
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG BASE_IMAGE=ghcr.io/home-assistant/${BUILD_ARCH}-base-debian:bookworm

FROM ${BUILDER_IMAGE} AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev \
      libswscale-dev libswresample-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin c300x-bridge \
 && strip target/release/c300x-bridge

FROM ${BASE_IMAGE} AS runtime-base
# Only FFmpeg's runtime libraries (speex decoder, aac encoder, h264 decoder, mjpeg encoder).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
ARG BUILD_ARCH
ARG BUILD_VERSION=0.1.0
LABEL io.hass.type="app" \
      io.hass.arch="${BUILD_ARCH}" \
      io.hass.version="${BUILD_VERSION}" \
      org.opencontainers.image.title="c300x-bridge" \
      org.opencontainers.image.description="BTicino Classe 300X intercom for Home Assistant"
COPY addon/run.sh /run.sh
ENTRYPOINT ["/run.sh"]

FROM runtime-base AS prebuilt
COPY target/release/c300x-bridge /usr/bin/c300x-bridge

FROM runtime-base AS runtime
COPY --from=builder /src/target/release/c300x-bridge /usr/bin/c300x-bridge
