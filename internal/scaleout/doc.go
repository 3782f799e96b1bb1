// Package scaleout holds the test of a deployment's shape: several `fossil
// server` processes (built from this tree) on one database, writers and
// readers spread over them, one process killed with SIGKILL and restarted
// under load. It has no code of its own; docs/OPERATIONS.md ("Several
// servers") describes the deployment it checks.
package scaleout
