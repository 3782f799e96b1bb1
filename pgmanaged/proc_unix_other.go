//go:build unix && !linux

package pgmanaged

import "syscall"

// setDeathSignal does nothing: only Linux has a parent-death signal. On
// other systems postgres notices a dead parent only when its clients vanish,
// so callers must stop the cluster with [Cluster.Stop].
func setDeathSignal(*syscall.SysProcAttr) {}
