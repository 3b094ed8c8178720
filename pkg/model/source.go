package model

import "context"

// Update is what a source sends: a complete new View, or an error saying the
// source cannot currently see the cluster (the last View stays in force: an
// unreadable file or an unreachable API server never removes anything).
type Update struct {
	View *View
	Err  error
	// PeersUnknown marks a View whose Self is current but whose Peers the
	// source cannot see yet (for example, it may read this node's Node
	// object but not list the others). The receiver takes Self from it and
	// keeps the peers it already has: an incomplete list never removes one.
	PeersUnknown bool
}

// Source produces views of the cluster. It never touches the kernel.
type Source interface {
	// Name says which source this is ("nodes file", "kubernetes", ...).
	Name() string
	// Run sends updates until ctx is done. It sends a View only when the
	// cluster changed, and always a complete one.
	Run(ctx context.Context, out chan<- Update) error
}

// Reasons a source gives for not seeing the cluster (SourceError.Reason).
// They are shown by `kindnet status` and exported as metric labels, so they
// are few and stable.
const (
	// SourceUnreachable: the source cannot be reached (API server down,
	// network problem). Status shows "unreachable since …".
	SourceUnreachable = "unreachable"
	// SourceForbidden: the source answered but refused (HTTP 403); the
	// missing permission is in SourceError.Permission.
	SourceForbidden = "forbidden"
	// SourceWaiting: the source has nothing to read yet (a kubeconfig or
	// nodes file that does not exist yet).
	SourceWaiting = "waiting"
	// SourceInvalid: what the source read cannot be used (a broken file).
	SourceInvalid = "invalid"
)

// SourceError is an Update.Err that says what kind of trouble a source is
// in, so the status record can show it precisely ("403: missing permission
// list nodes (cluster scope)") instead of only an error text. Any source may
// send plain errors; wrapping them in a SourceError only adds detail.
type SourceError struct {
	Reason string // one of the Source* reasons above
	// Permission is the missing permission when Reason is SourceForbidden,
	// e.g. "list nodes (cluster scope)".
	Permission string
	// Hint tells the operator what to do, e.g. "kindnet rbac | kubectl apply -f -".
	Hint string
	Err  error
}

func (e *SourceError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Err.Error()
}

func (e *SourceError) Unwrap() error { return e.Err }
