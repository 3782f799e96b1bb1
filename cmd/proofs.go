package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/proof"
)

// newProofs loads the checkpoint signer: the key file when configured,
// otherwise the key kept in the database (generated on first start), with
// a warning.
func (s *Server) newProofs(ctx context.Context) (*proof.Handler, error) {
	var skey string
	if path := s.Config.SigningKeyFile; path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, &ConfigError{"signing-key-file", err}
		}
		skey = strings.TrimSpace(string(b))
	} else {
		var created bool
		var err error
		skey, created, err = s.store.SigningKey(ctx, func() (string, error) {
			sk, _, err := proof.GenerateKey(s.Config.LogOrigin)
			return sk, err
		})
		if err != nil {
			return nil, fmt.Errorf("checkpoint signing key: %w", err)
		}
		s.Logger.Warn("checkpoints are signed with a key kept in the database: whoever can write the database can also sign; give production deployments --signing-key-file (clients that keep earlier checkpoints still detect a rewritten log through consistency proofs)",
			"generated", created)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, &ConfigError{"signing-key-file", fmt.Errorf("not a note signer key: %w", err)}
	}
	vkey, err := proof.VerifierKey(skey)
	if err != nil {
		return nil, &ConfigError{"signing-key-file", err}
	}
	return proof.New(proof.Config{
		Store:       s.store,
		Signer:      signer,
		VerifierKey: vkey,
		Origin:      s.Config.LogOrigin,
		Logger:      s.Logger,
		SignedFunc:  s.metrics.Tree().ObserveCheckpoint,
	}), nil
}

// treeBuildStep is how many events one step of the tree builder hashes
// while holding the head lock (appenders wait for it: a few milliseconds).
const treeBuildStep = 256

// startTreeBuilder gives a log written before the Merkle tree existed its
// tree, in the background and in steps of bounded size; proofs answer 503
// until it is complete. It also watches for events that reached the log
// without the appender (POST /import, a restore with SQL) and hashes them
// the same way: every treeWatchInterval it reads the head row (one small
// query, no lock). Every process runs it; the head lock makes builders
// take turns.
func (s *Server) startTreeBuilder() {
	if !fossil.TreeWork {
		s.Logger.Warn("a benchmark build without the Merkle tree (tag benchnotree): events are neither salted nor hashed, proofs are never served")
		return
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		ctx := s.streamCtx
		for ctx.Err() == nil {
			ts, err := s.store.TreeState(ctx)
			if err == nil && !ts.Complete() {
				s.buildTree(ctx)
			}
			interval := treeWatchInterval
			if s.Config.TreeWatchInterval > 0 {
				interval = s.Config.TreeWatchInterval
			}
			sleep(ctx, interval)
		}
	}()
}

// treeWatchInterval is how often the tree builder checks that the tree
// holds every event.
const treeWatchInterval = 2 * time.Second

// buildTree runs tree-builder steps until the tree is complete.
func (s *Server) buildTree(ctx context.Context) {
	last := time.Now()
	started := false
	for ctx.Err() == nil {
		size, head, err := s.store.BuildTree(ctx, treeBuildStep)
		if err == nil {
			s.metrics.Tree().ObserveSize(size, head)
		}
		switch {
		case errors.Is(err, context.Canceled) || ctx.Err() != nil:
			return
		case err != nil:
			s.Logger.Error("building the Merkle tree of the log failed; retrying", "error", err)
			sleep(ctx, 5*time.Second)
			continue
		case size >= head:
			if started {
				s.Logger.Info("the Merkle tree holds every event; proofs are served", "tree_size", size)
			}
			return
		}
		if !started || time.Since(last) > 5*time.Second {
			s.Logger.Info("building the Merkle tree of events written without it (an existing log or an import)", "tree_size", size, "events", head, "percent", 100*size/head)
			started, last = true, time.Now()
		}
		// Let appenders through between steps.
		sleep(ctx, 10*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
