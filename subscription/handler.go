package subscription

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/store"
)

// maxBody bounds a subscription definition or an ack body.
const maxBody = 1 << 20

// Register adds the subscription routes.
func (m *Manager) Register(r *mux.Router) {
	h := func(fn problem.HandlerFunc) http.Handler { return problem.Handler(m.logger, fn) }
	r.Handle("/subscriptions", h(m.handleCreate)).Methods(http.MethodPost)
	r.Handle("/subscriptions", h(m.handleList)).Methods(http.MethodGet)
	r.Handle("/subscriptions/{id}", h(m.handleGet)).Methods(http.MethodGet)
	r.Handle("/subscriptions/{id}", h(m.handleUpdate)).Methods(http.MethodPut)
	r.Handle("/subscriptions/{id}", h(m.handleDelete)).Methods(http.MethodDelete)
	r.Handle("/subscriptions/{id}/parked", h(m.handleParked)).Methods(http.MethodGet)
	r.Handle("/subscriptions/{id}/parked/replay", h(m.handleReplay)).Methods(http.MethodPost)
	r.Handle("/subscriptions/{id}/parked/{number}", h(m.handleDropParked)).Methods(http.MethodDelete)
	r.Handle("/subscriptions/{id}/sse", h(m.handlePull)).Methods(http.MethodGet)
	r.Handle("/subscriptions/{id}/ack", h(m.handleAck)).Methods(http.MethodPost)
	r.Handle("/subscriptions/{id}/nack", h(m.handleNack)).Methods(http.MethodPost)
}

// render is the answer for a stored subscription: the definition with id
// and status, never the credential.
func render(s *store.Subscription) (map[string]any, error) {
	var out map[string]any
	if err := json.Unmarshal(s.Definition, &out); err != nil {
		return nil, err
	}
	out["id"] = s.ID
	out["status"] = Status{
		State: s.State, Position: s.Position, Lag: max(s.Head-s.Position, 0),
		Delivered: s.Delivered, Parked: s.Parked, LastError: s.LastError,
	}
	return out, nil
}

func pathID(r *http.Request) (string, error) {
	id, err := url.PathUnescape(mux.Vars(r)["id"])
	if err != nil || id == "" || len(id) > 255 {
		return "", fossil.Invalid("path.id", "subscription id is missing or not properly escaped")
	}
	return id, nil
}

// canRead allows admin tokens and tokens with the id in consume.
func canRead(r *http.Request, id string) error {
	if err := auth.RequireAdmin(r.Context()); err == nil {
		return nil
	}
	return auth.CanConsume(r.Context(), id)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
}

// handleCreate serves POST /subscriptions.
func (m *Manager) handleCreate(w http.ResponseWriter, r *http.Request) error {
	if err := auth.RequireAdmin(r.Context()); err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	c, err := ParseDefinition(body)
	if err != nil {
		return err
	}
	if err := m.handshake(r.Context(), c); err != nil {
		return err
	}
	def, cred, err := c.encode()
	if err != nil {
		return err
	}
	id := newID()
	s, err := m.cfg.Store.CreateSubscription(r.Context(), store.CreateSubscriptionParams{
		ID: id, Definition: def, Credential: cred, StartAfter: c.StartAfter, StartAfterLocation: "config.startafter",
	})
	if err != nil {
		return err
	}
	m.Changed(id)
	out, err := render(s)
	if err != nil {
		return err
	}
	m.logger.InfoContext(r.Context(), "subscription created", "subscription", id, "protocol", c.Def.Protocol, "position", s.Position)
	w.Header().Set("Location", "/subscriptions/"+url.PathEscape(id))
	problem.WriteJSON(w, http.StatusCreated, out)
	return nil
}

// encode returns the stored forms of the definition and the credential.
func (c *Compiled) encode() (def, cred []byte, err error) {
	def, err = json.Marshal(c.Def)
	if err != nil {
		return nil, nil, err
	}
	if c.Credential != nil {
		cred, err = json.Marshal(c.Credential)
		if err != nil {
			return nil, nil, err
		}
	}
	return def, cred, nil
}

// handleList serves GET /subscriptions: those the token may read.
func (m *Manager) handleList(w http.ResponseWriter, r *http.Request) error {
	subs, err := m.cfg.Store.ListSubscriptions(r.Context())
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(subs))
	for _, s := range subs {
		if canRead(r, s.ID) != nil {
			continue
		}
		o, err := render(s)
		if err != nil {
			return err
		}
		out = append(out, o)
	}
	problem.WriteJSON(w, http.StatusOK, out)
	return nil
}

// handleGet serves GET /subscriptions/{id}.
func (m *Manager) handleGet(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := canRead(r, id); err != nil {
		return err
	}
	s, err := m.cfg.Store.GetSubscription(r.Context(), id)
	if err != nil {
		return err
	}
	out, err := render(s)
	if err != nil {
		return err
	}
	problem.WriteJSON(w, http.StatusOK, out)
	return nil
}

// handleUpdate serves PUT /subscriptions/{id}: replaces the definition,
// keeps the position, re-enables a disabled subscription.
func (m *Manager) handleUpdate(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := auth.RequireAdmin(r.Context()); err != nil {
		return err
	}
	old, err := m.cfg.Store.GetSubscription(r.Context(), id)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	c, err := ParseDefinition(body)
	if err != nil {
		return err
	}
	var oldDef Definition
	_ = json.Unmarshal(old.Definition, &oldDef)
	if oldDef.Sink != c.Def.Sink || oldDef.Protocol != c.Def.Protocol {
		if err := m.handshake(r.Context(), c); err != nil {
			return err
		}
	}
	def, cred, err := c.encode()
	if err != nil {
		return err
	}
	s, err := m.cfg.Store.UpdateSubscription(r.Context(), id, def, cred)
	if err != nil {
		return err
	}
	m.Changed(id)
	out, err := render(s)
	if err != nil {
		return err
	}
	m.logger.InfoContext(r.Context(), "subscription updated", "subscription", id, "paused", c.Paused)
	problem.WriteJSON(w, http.StatusOK, out)
	return nil
}

// handleDelete serves DELETE /subscriptions/{id}.
func (m *Manager) handleDelete(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := auth.RequireAdmin(r.Context()); err != nil {
		return err
	}
	s, err := m.cfg.Store.DeleteSubscription(r.Context(), id)
	if err != nil {
		return err
	}
	m.Changed(id)
	out, err := render(s)
	if err != nil {
		return err
	}
	m.logger.InfoContext(r.Context(), "subscription deleted", "subscription", id)
	problem.WriteJSON(w, http.StatusOK, out)
	return nil
}

// handleParked serves GET /subscriptions/{id}/parked.
func (m *Manager) handleParked(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := canRead(r, id); err != nil {
		return err
	}
	parked, err := m.cfg.Store.ListParked(r.Context(), id)
	if err != nil {
		return err
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"parked": parked})
	return nil
}

// handleReplay serves POST /subscriptions/{id}/parked/replay.
func (m *Manager) handleReplay(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := auth.RequireAdmin(r.Context()); err != nil {
		return err
	}
	if err := m.cfg.Store.ReplayParked(r.Context(), id); err != nil {
		return err
	}
	m.Changed(id)
	m.logger.InfoContext(r.Context(), "parked events replayed", "subscription", id)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// handleDropParked serves DELETE /subscriptions/{id}/parked/{number}.
func (m *Manager) handleDropParked(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := auth.RequireAdmin(r.Context()); err != nil {
		return err
	}
	n, err := fossil.ParseEventNumber("path.number", mux.Vars(r)["number"])
	if err != nil {
		return err
	}
	if _, err := m.cfg.Store.GetSubscription(r.Context(), id); err != nil {
		return err
	}
	if err := m.cfg.Store.DeleteParked(r.Context(), id, n); err != nil {
		return err
	}
	m.logger.InfoContext(r.Context(), "parked event dropped", "subscription", id, "number", n)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ackBody is the body of ack and nack.
type ackBody struct {
	Numbers []int64 `json:"numbers"`
	Action  string  `json:"action"`
}

func parseAck(w http.ResponseWriter, r *http.Request, nack bool) (string, *ackBody, error) {
	id, err := pathID(r)
	if err != nil {
		return "", nil, err
	}
	if err := auth.CanConsume(r.Context(), id); err != nil {
		return "", nil, err
	}
	body, err := readBody(w, r)
	if err != nil {
		return "", nil, err
	}
	var b ackBody
	if err := json.Unmarshal(body, &b); err != nil {
		return "", nil, fossil.Invalid("body", `the body must be a JSON object like {"numbers": [1, 2]}`)
	}
	if len(b.Numbers) == 0 {
		return "", nil, fossil.Invalid("numbers", "numbers must list at least one event number")
	}
	for i, n := range b.Numbers {
		if n < 1 {
			return "", nil, fossil.Invalid("numbers["+strconv.Itoa(i)+"]", "event numbers are positive integers")
		}
	}
	if nack {
		switch b.Action {
		case "":
			b.Action = "retry"
		case "retry", "park":
		default:
			return "", nil, fossil.Invalid("action", `action must be "retry" or "park"`)
		}
	} else if b.Action != "" {
		return "", nil, fossil.Invalid("action", "ack takes no action")
	}
	return id, &b, nil
}

// handleAck serves POST /subscriptions/{id}/ack.
func (m *Manager) handleAck(w http.ResponseWriter, r *http.Request) error {
	id, b, err := parseAck(w, r, false)
	if err != nil {
		return err
	}
	if done, err := m.settlePull(w, r, id, b.Numbers, ""); done || err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleNack serves POST /subscriptions/{id}/nack.
func (m *Manager) handleNack(w http.ResponseWriter, r *http.Request) error {
	id, b, err := parseAck(w, r, true)
	if err != nil {
		return err
	}
	if done, err := m.settlePull(w, r, id, b.Numbers, b.Action); done || err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// settlePull acks (action "") or nacks numbers of pull subscription id. When
// another process serves the subscription's members, the request is
// forwarded there and done reports that the answer is written.
func (m *Manager) settlePull(w http.ResponseWriter, r *http.Request, id string, numbers []int64, action string) (done bool, err error) {
	if _, err := m.cfg.Store.GetSubscription(r.Context(), id); err != nil {
		return false, err
	}
	m.mu.Lock()
	g := m.groups[id]
	m.mu.Unlock()
	if g == nil {
		body, _ := json.Marshal(struct {
			Numbers []int64 `json:"numbers"`
			Action  string  `json:"action,omitempty"`
		}{numbers, action})
		if ok, err := m.forward(w, r, id, body); ok || err != nil {
			return ok, err
		}
		return false, errNotInFlight(numbers[0])
	}
	return false, g.settle(numbers, action)
}

func errNotInFlight(n int64) error {
	return fmt.Errorf("%w: event %d is not in flight for this subscription", fossil.ErrConflict, n)
}
