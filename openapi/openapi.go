// Package openapi serves GET /openapi.json: the OpenAPI 3.1 document of
// Fossil's HTTP contract, kept true by cmd's TestOpenAPI, which checks
// real responses against it and that every registered route is in it.
package openapi

import (
	_ "embed"
	"net/http"

	"github.com/gorilla/mux"
)

// Document is the OpenAPI 3.1 document (JSON).
//
//go:embed openapi.json
var Document []byte

// Register adds GET /openapi.json to r.
func Register(r *mux.Router) {
	r.HandleFunc("/openapi.json", handleDocument).Methods(http.MethodGet)
}

// handleDocument serves GET /openapi.json.
func handleDocument(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(Document)
}
