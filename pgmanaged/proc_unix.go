//go:build unix

package pgmanaged

import (
	"errors"
	"io/fs"
	"slices"
	"syscall"
)

const supported = true

// sysProcAttr puts the child in its own process group (a terminal's Ctrl-C
// reaches only Fossil, which then stops the server in order), switches to
// the unprivileged user when there is one, and, on Linux, asks the kernel to
// send SIGTERM to the child when Fossil dies.
func sysProcAttr(as *runAs) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if as != nil {
		attr.Credential = &syscall.Credential{Uid: as.uid, Gid: as.gid, Groups: as.groups}
	}
	setDeathSignal(attr)
	return attr
}

// processAlive reports whether a process with this pid exists. EPERM means
// it exists but belongs to someone else.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killGroup sends SIGKILL to the process group led by pid, so that
// postgres's own children die with it.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL) // best effort: the group may be gone
}

// canSearch reports whether the account as may enter the directory fi.
func canSearch(fi fs.FileInfo, as *runAs) bool {
	perm := fi.Mode().Perm()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; let postgres decide
	}
	switch {
	case st.Uid == as.uid:
		return perm&0o100 != 0
	case st.Gid == as.gid || slices.Contains(as.groups, st.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}
