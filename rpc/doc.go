// Package rpc serves the protobuf interface (service fossil.v1.EventStore,
// proto/fossil/v1) with connectrpc.com/connect: gRPC, gRPC-Web and the
// Connect protocol on the HTTP port. The handlers keep the semantics of
// the HTTP endpoints: they decode events through the collector's decoder
// and read through the feed hub, both wired by cmd as functions and
// interfaces, so that rpc imports no feature package.
package rpc
