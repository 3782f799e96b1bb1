package schema

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
)

// ContentType is the media type of a schema document served by
// GET /schemas/{type}.
const ContentType = "application/schema+json"

// MaxSchemaBytes is the largest schema document PUT accepts.
const MaxSchemaBytes = 1 << 20

// MaxTypeLength is the longest event type, in bytes, that may have a
// schema. It keeps the type well inside PostgreSQL's 8000-byte
// notification payload and btree key limits.
const MaxTypeLength = 1024

// Register adds the schema routes to router, which must use
// UseEncodedPath so that a type containing '/' arrives escaped in {type}.
// Every route first calls [Registry.Authorize].
func (r *Registry) Register(router *mux.Router) {
	router.Handle("/schemas", r.handler(r.handleListSchemas)).Methods(http.MethodGet)
	router.Handle("/schemas/{type}", r.handler(r.handleGetSchema)).Methods(http.MethodGet)
	router.Handle("/schemas/{type}", r.handler(r.handlePutSchema)).Methods(http.MethodPut)
	router.Handle("/schemas/{type}", r.handler(r.handleDeleteSchema)).Methods(http.MethodDelete)
}

// handler adapts fn with problem.Handler, authorizing first.
func (r *Registry) handler(fn problem.HandlerFunc) http.Handler {
	return problem.Handler(r.logger, func(w http.ResponseWriter, req *http.Request) error {
		if r.Authorize != nil {
			if err := r.Authorize(req.Context()); err != nil {
				return err
			}
		}
		return fn(w, req)
	})
}

// schemaList is the body of GET /schemas.
type schemaList struct {
	Schemas []string `json:"schemas"`
}

// handleListSchemas serves GET /schemas: the types that have a schema, in
// byte order.
func (r *Registry) handleListSchemas(w http.ResponseWriter, req *http.Request) error {
	types, err := r.store.ListSchemaTypes(req.Context())
	if err != nil {
		return err
	}
	problem.WriteJSON(w, http.StatusOK, schemaList{Schemas: types})
	return nil
}

// handleGetSchema serves GET /schemas/{type}: the document exactly as it
// was registered. Unknown type → 404.
func (r *Registry) handleGetSchema(w http.ResponseWriter, req *http.Request) error {
	typ, err := typeVar(req)
	if err != nil {
		return err
	}
	doc, err := r.store.GetSchema(req.Context(), typ)
	if err != nil {
		return err
	}
	writeSchema(w, http.StatusOK, doc)
	return nil
}

// handlePutSchema serves PUT /schemas/{type}: the body, a JSON Schema of at
// most [MaxSchemaBytes], becomes the type's schema. 201 when the type had
// none, 200 when it replaced one; the response body is the schema. Not JSON
// or not a schema that compiles → 400 with the compiler's message.
func (r *Registry) handlePutSchema(w http.ResponseWriter, req *http.Request) error {
	typ, err := typeVar(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxSchemaBytes))
	if err != nil {
		return fmt.Errorf("read schema: %w", problem.BodyError(err))
	}
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return fossil.Invalid("body", "the body is empty; send the JSON Schema document")
	case !utf8.Valid(body):
		return fossil.Invalid("body", "the body is not valid UTF-8")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fossil.Invalid("body", "the body is not JSON: %s", err.Error())
	}
	sch, err := compileValue(typ, v)
	if err != nil {
		return fossil.Invalid("body", "not a valid JSON Schema: %s", err.Error())
	}
	created, err := r.store.PutSchema(req.Context(), typ, body)
	if err != nil {
		return err
	}
	r.afterWrite(req.Context(), typ, &compiled{doc: body, schema: sch})
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/schemas/"+url.PathEscape(typ))
	}
	writeSchema(w, status, body)
	return nil
}

// handleDeleteSchema serves DELETE /schemas/{type}: 204, or 404 when the
// type has no schema. Events of the type are no longer validated.
func (r *Registry) handleDeleteSchema(w http.ResponseWriter, req *http.Request) error {
	typ, err := typeVar(req)
	if err != nil {
		return err
	}
	if err := r.store.DeleteSchema(req.Context(), typ); err != nil {
		return err
	}
	r.afterWrite(req.Context(), typ, nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func writeSchema(w http.ResponseWriter, status int, doc []byte) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_, _ = w.Write(doc)
}

// typeVar returns the unescaped {type} of the route.
func typeVar(req *http.Request) (string, error) {
	const loc = "path.type"
	typ, err := url.PathUnescape(mux.Vars(req)["type"])
	switch {
	case err != nil:
		return "", fossil.Invalid(loc, "the type is not correctly path-escaped: %s", err.Error())
	case typ == "":
		return "", fossil.Invalid(loc, "the type is required")
	case len(typ) > MaxTypeLength:
		return "", fossil.Invalid(loc, "the type is %d bytes long; at most %d are allowed", len(typ), MaxTypeLength)
	case !utf8.ValidString(typ):
		return "", fossil.Invalid(loc, "the type is not valid UTF-8")
	case strings.IndexFunc(typ, unicode.IsControl) >= 0:
		return "", fossil.Invalid(loc, "the type contains a control character")
	}
	return typ, nil
}
