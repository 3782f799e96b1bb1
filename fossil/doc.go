// Package fossil is Fossil's domain vocabulary: events as stored, stream and
// consumer names, stream templates, HTTP header names and the sentinel errors
// every other package speaks. It performs no I/O.
package fossil
