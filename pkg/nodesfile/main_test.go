package nodesfile

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine a test started is
// still running when they end: a leaked goroutine in a long-running agent
// is a slow memory and file-descriptor leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
