# syntax=docker/dockerfile:1

# Build a static binary.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X github.com/fossil-events/fossil/cmd.version=${VERSION}" \
	-o /out/fossil .

# Run it as a non-root user. The image holds no PostgreSQL, so the
# zero-config managed cluster is unavailable: set DATABASE_URL.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="fossil" \
	org.opencontainers.image.description="Event store for CloudEvents on PostgreSQL" \
	org.opencontainers.image.source="https://github.com/fossil-events/fossil" \
	org.opencontainers.image.licenses="Apache-2.0" \
	org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/fossil /fossil
USER nonroot:nonroot
ENV FOSSIL_ADDR=:8080
EXPOSE 8080
# No shell or curl in the image: the binary checks its own /healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
	CMD ["/fossil", "healthcheck"]
ENTRYPOINT ["/fossil"]
CMD ["server"]
