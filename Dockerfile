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
COPY --from=build /out/fossil /fossil
USER nonroot:nonroot
ENV FOSSIL_ADDR=:8080
EXPOSE 8080
ENTRYPOINT ["/fossil"]
CMD ["server"]
