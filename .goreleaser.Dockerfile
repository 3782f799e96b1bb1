# The release image: goreleaser builds the binary and puts it beside this
# file (see dockers: in .goreleaser.yml). The Dockerfile builds from source.
FROM gcr.io/distroless/static-debian12:nonroot
COPY fossil /fossil
USER nonroot:nonroot
ENV FOSSIL_ADDR=:8080
EXPOSE 8080
# No shell or curl in the image: the binary checks its own /healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
	CMD ["/fossil", "healthcheck"]
ENTRYPOINT ["/fossil"]
CMD ["server"]
