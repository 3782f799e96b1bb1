package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMeasure(t *testing.T) {
	var got int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got++
		answer(w, r)
	}))
	defer srv.Close()
	r, err := measure(srv.URL+"/collect", 50)
	if err != nil {
		t.Fatal(err)
	}
	if got != 50 || r.N != 50 {
		t.Fatalf("server saw %d requests, result %d; want 50", got, r.N)
	}
	if r.P50 <= 0 || r.P99 < r.P50 || r.Took < r.P99 {
		t.Fatalf("inconsistent result %+v", r)
	}
}

func TestMeasureFailsOnAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	if _, err := measure(srv.URL, 3); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want the status", err)
	}
}
