package rpc_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/fossil-events/fossil/internal/testserver"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/proto/fossil/v1/fossilv1connect"
)

// TestProofsSameAsHTTP: the proof RPCs answer what the proof endpoints
// answer (the same signed note, hashes and errors), through grpc-go and
// through Connect, and the proofs verify with tlog.
func TestProofsSameAsHTTP(t *testing.T) {
	srv := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := grpcCaller(t, srv.URL, "")
	for i := range 7 {
		if _, err := c.collect(ctx, &fossilv1.CollectRequest{Stream: fmt.Sprintf("orders/%d", i%3), Events: []*pb.CloudEvent{jsonEvent(fmt.Sprintf("p-%d", i), `{}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(srv.URL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The Connect protocol with JSON over HTTP/1.1, as curl would speak it.
	cl := fossilv1connect.NewEventStoreClient(http.DefaultClient, srv.URL, connect.WithProtoJSON())
	cc := connectCaller(t, "connect-json", srv.URL, "", http.DefaultClient)
	protocols := map[string]func(method string, in, out proto.Message) (int, error){
		"grpc-go": func(method string, in, out proto.Message) (int, error) {
			err := conn.Invoke(ctx, "/fossil.v1.EventStore/"+method, in, out)
			return httpStatus(c.problem(err)), err
		},
		"connect-json": func(method string, in, out proto.Message) (int, error) {
			var res proto.Message
			var err error
			switch method {
			case "GetCheckpoint":
				var r *connect.Response[fossilv1.Checkpoint]
				if r, err = cl.GetCheckpoint(ctx, connect.NewRequest(in.(*fossilv1.GetCheckpointRequest))); err == nil {
					res = r.Msg
				}
			case "ProveInclusion":
				var r *connect.Response[fossilv1.InclusionProof]
				if r, err = cl.ProveInclusion(ctx, connect.NewRequest(in.(*fossilv1.ProveInclusionRequest))); err == nil {
					res = r.Msg
				}
			case "ProveConsistency":
				var r *connect.Response[fossilv1.ConsistencyProof]
				if r, err = cl.ProveConsistency(ctx, connect.NewRequest(in.(*fossilv1.ProveConsistencyRequest))); err == nil {
					res = r.Msg
				}
			}
			if err != nil {
				return httpStatus(cc.problem(err)), err
			}
			proto.Merge(out, res)
			return 200, nil
		},
	}
	for name, call := range protocols {
		t.Run(name, func(t *testing.T) {
			var cp fossilv1.Checkpoint
			if _, err := call("GetCheckpoint", &fossilv1.GetCheckpointRequest{}, &cp); err != nil {
				t.Fatal(err)
			}
			_, note := get("/checkpoint")
			_, key := get("/checkpoint/key")
			if string(cp.GetSignedNote()) != note || cp.GetVerifierKey() != strings.TrimSpace(key) || cp.GetTreeSize() != 7 {
				t.Fatalf("checkpoint: %q size %d key %q\nHTTP: %q key %q", cp.GetSignedNote(), cp.GetTreeSize(), cp.GetVerifierKey(), note, key)
			}
			var root tlog.Hash
			copy(root[:], cp.GetRootHash())

			for _, tc := range []struct {
				n, size uint64
				path    string
			}{{3, 0, "/events/3/proof"}, {1, 5, "/events/1/proof?tree_size=5"}, {7, 7, "/events/7/proof?tree_size=7"}, {99, 0, "/events/99/proof"}, {5, 3, "/events/5/proof?tree_size=3"}, {0, 0, "/events/0/proof"}} {
				var ip fossilv1.InclusionProof
				st, err := call("ProveInclusion", &fossilv1.ProveInclusionRequest{EventNumber: tc.n, TreeSize: tc.size}, &ip)
				hst, body := get(tc.path)
				if err != nil {
					if st != hst {
						t.Fatalf("%s: RPC status %d (%v), HTTP %d %s", tc.path, st, err, hst, body)
					}
					continue
				}
				if hst != 200 || jsonProof(&ip) != strings.TrimSpace(body) {
					t.Fatalf("%s:\n RPC  %s\n HTTP %d %s", tc.path, jsonProof(&ip), hst, body)
				}
				if tc.size == 0 {
					var leaf tlog.Hash
					copy(leaf[:], ip.GetLeafHash())
					if err := tlog.CheckRecord(toHashes(ip.GetProof()), int64(cp.GetTreeSize()), root, int64(tc.n-1), leaf); err != nil {
						t.Fatalf("%s: %v", tc.path, err)
					}
				}
			}
			for _, tc := range []struct{ from, to uint64 }{{3, 7}, {1, 1}, {5, 4}, {2, 99}, {0, 3}} {
				var pr fossilv1.ConsistencyProof
				st, err := call("ProveConsistency", &fossilv1.ProveConsistencyRequest{From: tc.from, To: tc.to}, &pr)
				hst, body := get(fmt.Sprintf("/proofs/consistency?from=%d&to=%d", tc.from, tc.to))
				if err != nil {
					if st != hst {
						t.Fatalf("consistency %d→%d: RPC status %d (%v), HTTP %d %s", tc.from, tc.to, st, err, hst, body)
					}
					continue
				}
				want := fmt.Sprintf(`{"from":%d,"to":%d,"proof":%s}`, tc.from, tc.to, b64s(pr.GetProof()))
				if hst != 200 || want != strings.TrimSpace(body) {
					t.Fatalf("consistency %d→%d:\n RPC  %s\n HTTP %d %s", tc.from, tc.to, want, hst, body)
				}
			}
		})
	}
}

func httpStatus(p map[string]any) int {
	if s, ok := p["status"].(float64); ok {
		return int(s)
	}
	return 0
}

func toHashes(bs [][]byte) []tlog.Hash {
	out := make([]tlog.Hash, len(bs))
	for i, b := range bs {
		copy(out[i][:], b)
	}
	return out
}

func b64s(bs [][]byte) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = `"` + base64.StdEncoding.EncodeToString(b) + `"`
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func jsonProof(p *fossilv1.InclusionProof) string {
	return fmt.Sprintf(`{"leaf_index":%d,"tree_size":%d,"leaf_hash":"%s","proof":%s}`, p.GetLeafIndex(), p.GetTreeSize(), base64.StdEncoding.EncodeToString(p.GetLeafHash()), b64s(p.GetProof()))
}
