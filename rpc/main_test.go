package rpc_test

import (
	"testing"

	"github.com/fossil-events/fossil/internal/dbtest"
)

// TestMain gives every test its own database (see internal/dbtest) and
// checks for leaked goroutines.
func TestMain(m *testing.M) { dbtest.Main(m) }
