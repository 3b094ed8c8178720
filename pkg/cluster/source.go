package cluster

import "context"

// Update is what a source sends: a complete new View, or an error saying the
// source cannot currently see the cluster (the last View stays in force: an
// unreadable file or an unreachable API server never removes anything).
type Update struct {
	View *View
	Err  error
}

// Source produces views of the cluster. It never touches the kernel.
type Source interface {
	// Name says which source this is ("nodes file", "kubernetes", ...).
	Name() string
	// Run sends updates until ctx is done. It sends a View only when the
	// cluster changed, and always a complete one.
	Run(ctx context.Context, out chan<- Update) error
}
