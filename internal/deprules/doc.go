// Package deprules holds the test of kindnet's dependency rules: the model,
// every reconciler and the CNI plugin must not link the Kubernetes client or
// API types, a cluster source, metrics, the CLI or a YAML library. The
// plugin runs on every pod start and the reconcilers only need the
// validated view, so what they link is start-up time, memory and attack
// surface for nothing. The rules live in deprules_test.go; a new package is
// held to them by adding one line there.
//
// It has no code of its own and touches nothing: the test only runs
// `go list`.
package deprules
