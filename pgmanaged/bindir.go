package pgmanaged

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoPostgres is returned by [FindBinDir] and [Start] when the PostgreSQL
// server programs (initdb and postgres) cannot be found. The returned error
// wraps it with instructions for the user.
var ErrNoPostgres = errors.New("PostgreSQL server programs (initdb, postgres) not found")

// installHint is appended to ErrNoPostgres so the user knows what to do.
const installHint = "install PostgreSQL (Debian/Ubuntu: apt-get install postgresql; " +
	"Fedora/RHEL: dnf install postgresql-server; macOS: brew install postgresql@16) " +
	"or set DATABASE_URL to use an existing PostgreSQL server"

// EnvBinDir names the environment variable that overrides the search done by
// [FindBinDir].
const EnvBinDir = "FOSSIL_PG_BIN"

// FindBinDir returns the directory holding the initdb and postgres programs.
//
// It looks, in order, at the directory named by $FOSSIL_PG_BIN (and nowhere
// else when that is set), at the directory of initdb found on $PATH after
// following symlinks (provided postgres sits next to it), at
// /usr/lib/postgresql/*/bin and /usr/pgsql-*/bin (highest version first), and
// at /usr/local/pgsql/bin, /opt/homebrew/bin and /usr/local/bin.
//
// When nothing is found the error wraps [ErrNoPostgres] and says how to
// install PostgreSQL.
func FindBinDir() (string, error) {
	return findBinDir(os.Getenv, exec.LookPath)
}

// findBinDir is FindBinDir with its environment injected, so tests can run in
// parallel without t.Setenv.
func findBinDir(getenv func(string) string, lookPath func(string) (string, error)) (string, error) {
	if dir := getenv(EnvBinDir); dir != "" {
		if hasServerPrograms(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%w in %s=%s: point it at the directory that holds them, or unset it; or %s",
			ErrNoPostgres, EnvBinDir, dir, installHint)
	}
	if p, err := lookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if dir := filepath.Dir(p); hasServerPrograms(dir) {
			return dir, nil
		}
	}
	var candidates []string
	candidates = append(candidates, globByVersion("/usr/lib/postgresql/*/bin", "/usr/lib/postgresql/")...)
	candidates = append(candidates, globByVersion("/usr/pgsql-*/bin", "/usr/pgsql-")...)
	candidates = append(candidates, "/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin")
	for _, dir := range candidates {
		if hasServerPrograms(dir) {
			if real, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb")); err == nil && hasServerPrograms(filepath.Dir(real)) {
				return filepath.Dir(real), nil
			}
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w on $PATH or in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, /usr/local/pgsql/bin, /opt/homebrew/bin, /usr/local/bin: "+
		"%s, or set %s to the directory that holds them", ErrNoPostgres, installHint, EnvBinDir)
}

// globByVersion expands pattern and orders the matches by the version
// number that follows prefix, highest first ("17" before "9.6").
func globByVersion(pattern, prefix string) []string {
	matches, _ := filepath.Glob(pattern) // the pattern is constant and valid
	version := func(p string) []int {
		rest := strings.TrimPrefix(p, prefix)
		rest, _, _ = strings.Cut(rest, "/")
		var v []int
		for part := range strings.SplitSeq(rest, ".") {
			n, err := strconv.Atoi(part)
			if err != nil {
				return nil
			}
			v = append(v, n)
		}
		return v
	}
	slices.SortStableFunc(matches, func(a, b string) int {
		return slices.Compare(version(b), version(a))
	})
	return matches
}

// hasServerPrograms reports whether dir holds executable initdb and postgres.
func hasServerPrograms(dir string) bool {
	return isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
