# Switchyard in a container: a build stage with the Rust toolchain, a small runtime stage with
# the binary only (plus CA certificates for rtmps:// and https:// pulls and pushes).
#
#   docker build -t switchyard .
#   docker run --rm -p 8080:8080 -p 1935:1935 -p 8189:8189/udp switchyard
#
# The default build is pure Rust (no audio conversion). For AAC <-> Opus conversion build with
#   docker build --build-arg FEATURES=transcode -t switchyard .
# (the build stage then needs FFmpeg's libraries, installed below when asked for).

FROM rust:1-bookworm AS build
ARG FEATURES=""
RUN if [ -n "$FEATURES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends \
        libavcodec-dev libavformat-dev libavutil-dev libswresample-dev pkg-config clang libclang-dev \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features "$FEATURES" --bin switchyard \
    && cp target/release/switchyard /switchyard

FROM debian:bookworm-slim
ARG FEATURES=""
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && if [ -n "$FEATURES" ]; then apt-get install -y --no-install-recommends \
         libavcodec59 libavformat59 libavutil57 libswresample4; fi \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home switchyard
COPY --from=build /switchyard /usr/local/bin/switchyard
USER switchyard
# HTTP (console, API, WHIP/WHEP, HLS, MSE, metrics), RTMP, WebRTC media (one UDP port).
EXPOSE 8080 1935 8189/udp
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve"]
