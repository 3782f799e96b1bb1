// Package deploy holds the deployment files of Fossil: deploy/kubernetes
// (plain manifests, a Kustomize base and a Prometheus overlay). It has no
// code; its test checks the manifests against the Kubernetes API types
// (strict decoding: an unknown or misspelt field fails), the API server's
// own name and label rules, and what Fossil needs of them (probes, the
// drain, documented variables and secrets).
package deploy
