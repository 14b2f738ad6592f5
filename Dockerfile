# neo-uptime-node: a static binary in a minimal, non-root image.
#   docker build -t neo-uptime-node .
#   docker run --rm -e BACKEND_BASE_URL=... -e API_KEY=... -v neo-state:/data neo-uptime-node --every 30s
# The base images are arguments so that a machine without a registry (the
# project's CI) can build this very file from local stand-ins; see
# cmd/neo-uptime-node/docker_test.go.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/neo-uptime-node ./cmd/neo-uptime-node \
 && mkdir -p /out/data

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/neo-uptime-node /usr/local/bin/neo-uptime-node
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATABASE_PATH=/data/neo-uptime-node.db
VOLUME ["/data"]
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/neo-uptime-node"]
# The original's containers ran forever: repeat every STATUS_REPORT_INTERVAL
# until SIGTERM, which lets the run in progress finish its report pass.
CMD ["run", "-loop"]
