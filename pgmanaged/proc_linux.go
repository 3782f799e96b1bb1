//go:build linux

package pgmanaged

import "syscall"

// setDeathSignal makes the kernel send SIGTERM to postgres when the thread
// that started it, and so the Fossil process, dies. Go applies it after
// switching credentials, which would otherwise clear it.
func setDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGTERM
}
