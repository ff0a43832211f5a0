# syntax=docker/dockerfile:1
#
# The eventbus binary (gateway: `eventbus serve`) as a static, non-root
# image. Build from the repository root:
#
#   docker build -t eventbus:$(git describe --tags --always) \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) .
#
# The build context has no .git (.dockerignore), so the go command cannot
# stamp VCS information itself: VERSION and REVISION reach `eventbus version`
# and the eventbus_build_info metric through -ldflags -X (cmd/eventbus/version.go).
# docs/deploy.md describes the image; cmd/eventbus/deploy_test.go checks this
# file against the binary (port, entrypoint, command, build flags).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
ARG REVISION=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/eventbus ./cmd/eventbus

# distroless/static: CA certificates (/etc/ssl/certs/ca-certificates.crt),
# tzdata and a nonroot user (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/eventbus /usr/local/bin/eventbus
USER 65532:65532
# serve's default --listen (:8080, $EVENTBUS_LISTEN).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/eventbus"]
CMD ["serve"]
