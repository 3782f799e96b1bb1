package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/store"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

type schemaBundle struct {
	ctx   context.Context
	store *store.Store
}

// openStore opens a store on a fresh database, closed at the end of t.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), store.Config{DatabaseURL: dbtest.NewDB(t), MaxConns: 8})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

func setupSchemas(t *testing.T) *schemaBundle {
	t.Helper()
	return &schemaBundle{ctx: t.Context(), store: openStore(t)}
}

func TestSchemas(t *testing.T) {
	t.Parallel()

	t.Run("PutGetListDelete", func(t *testing.T) {
		t.Parallel()
		bundle := setupSchemas(t)
		ctx, st := bundle.ctx, bundle.store

		// Stored exactly as sent, whitespace and key order included.
		docs := []struct {
			typ         string
			doc         string
			wantCreated bool
		}{
			{"org.example.b", `{ "type" : "object" }`, true},
			{"org.example.a", `{"type":"string"}`, true},
			{"Org.example.C/with slash", `true`, true},
			{"org.example.b", "{\n  \"required\": [\"id\"],\n  \"type\": \"object\"\n}", false},
		}
		for _, d := range docs {
			created, err := st.PutSchema(ctx, d.typ, []byte(d.doc))
			if err != nil {
				t.Fatalf("PutSchema(%q): %v", d.typ, err)
			}
			if created != d.wantCreated {
				t.Errorf("PutSchema(%q) created = %v, want %v", d.typ, created, d.wantCreated)
			}
		}

		got, err := st.GetSchema(ctx, "org.example.b")
		if err != nil {
			t.Fatalf("GetSchema: %v", err)
		}
		if want := docs[3].doc; string(got) != want {
			t.Errorf("GetSchema = %q, want %q", got, want)
		}

		types, err := st.ListSchemaTypes(ctx)
		if err != nil {
			t.Fatalf("ListSchemaTypes: %v", err)
		}
		wantTypes := []string{"Org.example.C/with slash", "org.example.a", "org.example.b"}
		if !slices.Equal(types, wantTypes) {
			t.Errorf("ListSchemaTypes = %q, want %q", types, wantTypes)
		}

		all, err := st.AllSchemas(ctx)
		if err != nil {
			t.Fatalf("AllSchemas: %v", err)
		}
		if len(all) != 3 || string(all["org.example.a"]) != `{"type":"string"}` || string(all["Org.example.C/with slash"]) != "true" {
			t.Errorf("AllSchemas = %q", all)
		}

		if err := st.DeleteSchema(ctx, "org.example.a"); err != nil {
			t.Fatalf("DeleteSchema: %v", err)
		}
		if err := st.DeleteSchema(ctx, "org.example.a"); !errors.Is(err, fossil.ErrNotFound) {
			t.Errorf("second DeleteSchema = %v, want ErrNotFound", err)
		}
		if _, err := st.GetSchema(ctx, "org.example.a"); !errors.Is(err, fossil.ErrNotFound) {
			t.Errorf("GetSchema after delete = %v, want ErrNotFound", err)
		}
		created, err := st.PutSchema(ctx, "org.example.a", []byte(`{}`))
		if err != nil || !created {
			t.Errorf("PutSchema after delete = %v, %v; want created", created, err)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		bundle := setupSchemas(t)
		types, err := bundle.store.ListSchemaTypes(bundle.ctx)
		if err != nil || types == nil || len(types) != 0 {
			t.Errorf("ListSchemaTypes = %#v, %v; want empty non-nil", types, err)
		}
		all, err := bundle.store.AllSchemas(bundle.ctx)
		if err != nil || all == nil || len(all) != 0 {
			t.Errorf("AllSchemas = %#v, %v; want empty non-nil", all, err)
		}
		if _, err := bundle.store.GetSchema(bundle.ctx, "nope"); !errors.Is(err, fossil.ErrNotFound) {
			t.Errorf("GetSchema = %v, want ErrNotFound", err)
		}
	})

	t.Run("RejectsNonJSON", func(t *testing.T) {
		t.Parallel()
		bundle := setupSchemas(t)
		if _, err := bundle.store.PutSchema(bundle.ctx, "t", []byte(`{nope`)); err == nil {
			t.Fatal("PutSchema accepted a document that is not JSON")
		}
		if _, err := bundle.store.GetSchema(bundle.ctx, "t"); !errors.Is(err, fossil.ErrNotFound) {
			t.Errorf("GetSchema = %v, want ErrNotFound", err)
		}
	})

	t.Run("ConcurrentFirstPutCreatesOnce", func(t *testing.T) {
		t.Parallel()
		bundle := setupSchemas(t)
		const writers = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created int
		)
		for range writers {
			wg.Go(func() {
				c, err := bundle.store.PutSchema(bundle.ctx, "race", []byte(`{}`))
				if err != nil {
					t.Errorf("PutSchema: %v", err)
					return
				}
				if c {
					mu.Lock()
					created++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if created != 1 {
			t.Errorf("%d concurrent first puts reported created; want exactly 1", created)
		}
	})

	t.Run("Notifies", func(t *testing.T) {
		t.Parallel()
		bundle := setupSchemas(t)
		ctx, st := bundle.ctx, bundle.store
		b := notify.New(st.NewListener(), notify.Config{Channels: []string{store.ChannelSchemas}})
		if err := b.Start(ctx); err != nil {
			t.Fatalf("start broadcaster: %v", err)
		}
		t.Cleanup(b.Stop)
		// Subscribed after Start, so the connect's wake-up is not seen.
		sub := b.Subscribe(store.ChannelSchemas, "notified.type")
		t.Cleanup(sub.Close)

		steps := []struct {
			name string
			do   func() error
		}{
			{"Put", func() error { _, err := st.PutSchema(ctx, "notified.type", []byte(`{}`)); return err }},
			{"Replace", func() error { _, err := st.PutSchema(ctx, "notified.type", []byte(`true`)); return err }},
			{"Delete", func() error { return st.DeleteSchema(ctx, "notified.type") }},
		}
		for _, step := range steps {
			if err := step.do(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			select {
			case <-sub.C():
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no notification on %s within 5s", step.name, store.ChannelSchemas)
			}
		}
	})
}
