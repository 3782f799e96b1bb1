package cmd

import (
	"github.com/fossil-events/fossil/metrics"
	"github.com/fossil-events/fossil/store"
)

// watchReplacements takes the read replicas out of use on every
// fossil_replaced notification (from any process), until each has
// replayed the replacement: a replica behind one would serve the old
// content. Nothing runs without replicas.
func (s *Server) watchReplacements() {
	if len(s.store.ReplicaStatuses()) == 0 {
		return
	}
	sub := s.notifier.Subscribe(store.ChannelReplaced)
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		defer sub.Close()
		for {
			select {
			case <-s.streamCtx.Done():
				return
			case <-sub.C():
				s.store.ReplicasReplaced()
			}
		}
	}()
}

// replicaStats adapts the store's replica states for metrics.
func (s *Server) replicaStats() metrics.ReadStats {
	var out metrics.ReadStats
	out.PrimaryPages, out.PrimaryEvents = s.store.PrimaryReads()
	for _, r := range s.store.ReplicaStatuses() {
		out.Replicas = append(out.Replicas, metrics.ReplicaStats{
			Name: r.Name, InUse: r.InUse, Reason: r.Reason,
			Replayed: r.Replayed, Behind: r.Behind, Lag: r.Lag,
			Pages: r.Pages, Events: r.Events, Failures: r.Failures,
		})
	}
	return out
}
