#!/usr/bin/env bash
# Regenerates the Go code beside proto/fossil/v1/*.proto (`make proto`).
# protoc comes from the system (apt-get install protobuf-compiler); the Go
# plugins are built at the versions go.mod pins (google.golang.org/protobuf,
# connectrpc.com/connect). An argument writes the code under another
# directory instead of proto/ (the test that checks the committed code is
# current uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-proto}
if ! command -v protoc >/dev/null; then
	echo "protoc is missing: apt-get install protobuf-compiler libprotobuf-dev (bash .ci/test installs them)" >&2
	exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-connect-go" connectrpc.com/connect/cmd/protoc-gen-connect-go
# The CloudEvents message comes from sdk-go's protobuf format module, which
# registers it as "cloudevent.proto".
ce="$(go list -m -f '{{.Dir}}' github.com/cloudevents/sdk-go/binding/format/protobuf/v2)/pb"
protoc -I proto -I "$ce" \
	--plugin=protoc-gen-go="$bin/protoc-gen-go" \
	--plugin=protoc-gen-connect-go="$bin/protoc-gen-connect-go" \
	--go_out="$out" --go_opt=paths=source_relative \
	--connect-go_out="$out" --connect-go_opt=paths=source_relative \
	proto/fossil/v1/*.proto
