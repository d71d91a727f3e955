# syntax=docker/dockerfile:1
#
# metalpower image: the worker and starter binaries on a small Debian base.
# docker-compose.yml picks the binary per service with `command:`.
#
#   docker build -t metalpower .
#   docker run --rm metalpower starter config options

# --- build ------------------------------------------------------------------
FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits do not invalidate the module layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The build ID Worker Deployment Versioning uses by default ([temporal]
# build_id): .git is not in the context, so pass it, new for every build:
#   docker build --build-arg BUILD_ID=$(git rev-parse --short=12 HEAD) .
ARG BUILD_ID=
# CGO_ENABLED=0: the SQLite driver (modernc.org/sqlite) and pgx are pure Go,
# so the binaries are static and run on any base image.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/metalpower/metalpower/internal/conductor.linkedBuildID=${BUILD_ID}" -o /out/ ./worker ./starter

# --- runtime ----------------------------------------------------------------
# debian:bookworm-slim rather than distroless: the health checks need an HTTP
# client (curl), and ca-certificates lets the worker reach HTTPS BMCs and
# Keystone/Nova with the system roots.
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 metalpower \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/metalpower --create-home --shell /usr/sbin/nologin metalpower
COPY --from=build /out/worker /out/starter /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/metalpower
# The Ironic-compatible API ([api] port); only `starter api` listens on it.
EXPOSE 6385
CMD ["worker"]
