//go:build !unix

package pgmanaged

import (
	"io/fs"
	"os"
	"syscall"
)

// supported is false: [Start] refuses to run on systems without Unix
// sockets and process groups.
const supported = false

func sysProcAttr(*runAs) *syscall.SysProcAttr { return nil }

func processAlive(int) bool { return false }

func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func canSearch(fs.FileInfo, *runAs) bool { return true }
