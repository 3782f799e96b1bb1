package store

import (
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/fossil"
)

// headCache lets a group commit in one round trip instead of two. It holds
// the log head after this process's last commit and the last sequence of
// the streams this process has read or written since, which are exact for
// as long as the head has not moved: a group planned from it sends the
// head lock with a check that the head is unchanged, and the writes, as
// one implicit transaction in one batch (see [cachedGroupTx]). Any doubt
// sends the group the long way, which reads under the lock and refreshes
// the cache.
//
// The streams are kept in least-recently-used order and the oldest is
// forgotten when the cache is full, so the streams in use stay known
// however many streams the log holds.
//
// A nil *headCache is valid and never plans a group. Only the holder of
// the appender's writer lock uses it.
type headCache struct {
	valid   bool
	head    int64
	streams *simplelru.LRU[string, int64]
	// treeSize and tree are the Merkle tree after the last commit (tree
	// only when it is complete, treeSize == head).
	treeSize int64
	tree     fossil.TreeEdge
	// skip counts groups that take the long way after the cache turned out
	// stale, so that processes writing concurrently do not fail a round
	// trip on every group.
	skip cooldown
}

const (
	// maxCachedStreams bounds the cache; beyond it, the least recently
	// used stream is forgotten.
	maxCachedStreams = 1 << 16
)

// cooldownGroups is how many groups take the careful way after the quick
// one stopped paying: after a stale head cache (headCache.skip) and after a
// group met a retried duplicate (Appender.lookups).
const cooldownGroups = 64

// cooldown counts the next groups that take the careful way. Only the
// holder of the appender's writer lock uses it.
type cooldown int

// start makes the next cooldownGroups groups careful.
func (c *cooldown) start() { *c = cooldownGroups }

// next reports whether this group is to be careful, and counts it.
func (c *cooldown) next() bool {
	if *c == 0 {
		return false
	}
	*c--
	return true
}

func newHeadCache() *headCache { return newHeadCacheSize(maxCachedStreams) }

func newHeadCacheSize(size int) *headCache {
	streams, err := simplelru.NewLRU[string, int64](size, nil)
	if err != nil {
		panic(err) // only for a size < 1
	}
	return &headCache{streams: streams}
}

// unknownStreams are the streams of a group planned from the cache that
// the cache does not know. The group takes them for new, and its batch
// reads their heads under the lock, before the INSERT: if one exists, the
// unique index on (stream, sequence) fails the INSERT, nothing is written,
// and found holds the heads, read in that same round trip, so that the
// group can be planned again from the cache instead of taking the long way.
type unknownStreams struct {
	names []string
	found map[string]int64
}

// queue adds the read of the heads to a cached group's batch; a nil
// receiver adds nothing.
func (u *unknownStreams) queue(batch *pgx.Batch) {
	if u == nil {
		return
	}
	batch.Queue(streamHeadsSQL, u.names).Query(scanStreamHeads(u.found))
}

// scanStreamHeads reads the (stream, sequence) rows of streamHeadsSQL into
// heads.
func scanStreamHeads(heads map[string]int64) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		for rows.Next() {
			var name string
			var seq int64
			if err := rows.Scan(&name, &seq); err != nil {
				return err
			}
			heads[name] = seq
		}
		return rows.Err()
	}
}

// plan returns the state of a group decided from the cache, or nil when
// the group must take the long way: the cache is not valid or is being
// skipped, the group reads its stored events (lookup, which any group with
// a replacement does), or a request expects a sequence in a stream the
// cache does not know. A stream the cache does not know is taken for new;
// its head is read in the same batch ([unknownStreams]).
func (c *headCache) plan(reqs []*AppendRequest, lookup bool) *groupState {
	if c == nil || lookup {
		return nil
	}
	if c.skip.next() || !c.valid {
		return nil
	}
	st := newGroupState(len(reqs))
	st.fromCache, st.loadedHead, st.head = true, c.head, c.head
	st.treeSize, st.tree = c.treeSize, c.tree
	for _, r := range reqs {
		if _, ok := st.streams[r.Stream]; ok {
			continue
		}
		seq, ok := c.streams.Get(r.Stream)
		if !ok {
			if r.ExpectedSequence > 0 {
				return nil
			}
			if st.unknown == nil {
				st.unknown = &unknownStreams{found: map[string]int64{}}
			}
			if !containsString(st.unknown.names, r.Stream) {
				st.unknown.names = append(st.unknown.names, r.Stream)
			}
			continue
		}
		st.streams[r.Stream] = seq
	}
	return st
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// committed records a group planned from the cache that has committed.
func (c *headCache) committed(st *groupState) {
	c.head = st.head
	c.treeSize, c.tree = st.treeSize, st.tree
	c.remember(st)
}

// refresh records a group that took the long way and committed. What it
// read under the lock is exact; what the cache held stays exact only if no
// other process had written since this one's last commit.
func (c *headCache) refresh(st *groupState) {
	if c == nil {
		return
	}
	if !c.valid || st.loadedHead != c.head {
		c.streams.Purge()
	}
	c.valid, c.head = true, st.head
	c.treeSize, c.tree = st.treeSize, st.tree
	c.remember(st)
}

func (c *headCache) remember(st *groupState) {
	for name, seq := range st.streams {
		c.streams.Add(name, seq)
	}
}

// stale handles a group planned from the cache that failed on the head
// check or on the (stream, sequence) index. When the batch read the head
// of an existing stream the cache had taken for new, the cache was not
// stale, only incomplete: it learns those heads and reports true, and the
// group can be planned again. Otherwise the head moved: the cache forgets
// everything and the next groups take the long way.
func (c *headCache) stale(st *groupState) (learned bool) {
	if st.unknown != nil && len(st.unknown.found) > 0 {
		for name, seq := range st.unknown.found {
			c.streams.Add(name, seq)
		}
		return true
	}
	c.reset()
	c.skip.start()
	return false
}

// reset forgets everything: after a failed group the outcome of its commit
// may be unknown.
func (c *headCache) reset() {
	if c == nil {
		return
	}
	c.valid = false
	c.streams.Purge()
}
