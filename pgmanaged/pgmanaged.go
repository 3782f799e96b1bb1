package pgmanaged

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrDataDirInUse is returned by [Start] when another live PostgreSQL server
// already runs on the data directory.
var ErrDataDirInUse = errors.New("data directory is in use by another PostgreSQL server")

const (
	// port only names the socket file (.s.PGSQL.5432): TCP is off and the
	// socket directory is private to the cluster, so it never clashes.
	port = 5432

	// superuser is the role initdb creates and [Cluster.URL] connects as.
	superuser = "postgres"

	// systemUser is the account postgres runs as when Fossil runs as root.
	systemUser = "postgres"

	// LogFileName is the file in the data directory that receives the
	// server's output.
	LogFileName = "fossil-postgres.log"

	// logRotateSize is the size above which the log is moved aside to
	// LogFileName+".1" at start.
	logRotateSize = 16 << 20

	defaultMaxConnections = 200
	readyTimeout          = 30 * time.Second
	readyInterval         = 50 * time.Millisecond
	stopTimeout           = 10 * time.Second
	quitTimeout           = 5 * time.Second

	// maxSocketPath keeps the socket path under the sun_path limit (104
	// bytes on macOS, 108 on Linux, including the terminating NUL).
	maxSocketPath = 100
)

// Config says where and how to run a managed cluster.
type Config struct {
	// DataDir is the cluster directory. When it holds no PG_VERSION file it
	// is created (with missing parents, mode 0755) and initialised with
	// initdb. Empty means [DefaultDataDir].
	DataDir string

	// BinDir is the directory holding initdb and postgres. Empty means
	// [FindBinDir].
	BinDir string

	// Ephemeral trades durability for speed, for tests: initdb runs with
	// --no-sync and the server with fsync, synchronous_commit and
	// full_page_writes off. A crash of the machine may corrupt the cluster.
	// [Cluster.Stop] removes DataDir when [Start] created the directory.
	Ephemeral bool

	// Logger receives a few lifecycle records. Nil discards them. The
	// server's own output goes to [LogFileName] in DataDir.
	Logger *slog.Logger

	// MaxConnections is the server's max_connections. Zero means 200.
	MaxConnections int

	// SocketDir is the directory of the server's Unix socket. Empty means
	// a new private directory, removed by [Cluster.Stop]; a given one must
	// exist, be private to the account postgres runs as, and is left in
	// place (so that a restarted server keeps its address).
	SocketDir string
}

// Cluster is a running PostgreSQL server started by [Start]. Its methods are
// safe for concurrent use.
type Cluster struct {
	dataDir       string
	socketDir     string
	removeDataDir bool // Ephemeral and Start created dataDir
	keepSocketDir bool // given by the caller
	logger        *slog.Logger
	logPath       string
	binDir        string
	as            *runAs // the account postgres runs as; nil: ours

	logFile *os.File
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the postgres process has exited
	exitErr error         // written before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// runAs is the unprivileged account initdb and postgres run as when Fossil
// runs as root. Nil means the current user.
type runAs struct {
	name   string
	home   string
	uid    uint32
	gid    uint32
	groups []uint32
}

// Start initialises the cluster in cfg.DataDir if needed, starts postgres as
// a child process and returns once it accepts connections. ctx bounds only
// the start; the server runs until [Cluster.Stop] or until this process dies.
//
// Start waits up to 30 seconds for the server to accept connections, longer
// while the server reports that it is still starting up (crash recovery of a
// large cluster), and never longer than ctx allows. When postgres exits
// during the start, the error includes the tail of its log.
//
// The errors wrap [ErrNoPostgres] when the programs cannot be found and
// [ErrDataDirInUse] when another live server owns the data directory.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if !supported {
		return nil, fmt.Errorf("managed PostgreSQL is not supported on %s: set DATABASE_URL to use an existing server", runtime.GOOS)
	}
	begin := time.Now()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(slog.String("component", "pgmanaged"))

	binDir := cfg.BinDir
	if binDir == "" {
		if binDir, err = FindBinDir(); err != nil {
			return nil, err
		}
	} else if !hasServerPrograms(binDir) {
		return nil, fmt.Errorf("%w in BinDir %s: %s", ErrNoPostgres, binDir, installHint)
	}
	maxConns := cfg.MaxConnections
	switch {
	case maxConns == 0:
		maxConns = defaultMaxConnections
	case maxConns < 0:
		return nil, fmt.Errorf("pgmanaged: MaxConnections %d is negative", maxConns)
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = DefaultDataDir()
	}
	if dataDir, err = filepath.Abs(dataDir); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	as, err := lookupRunAs()
	if err != nil {
		return nil, err
	}

	c := &Cluster{
		dataDir: dataDir,
		logger:  logger,
		logPath: filepath.Join(dataDir, LogFileName),
		binDir:  binDir,
		as:      as,
		exited:  make(chan struct{}),
	}
	defer func() {
		if err != nil {
			_ = c.Stop() // the start error is the one that matters
		}
	}()

	created, err := prepareDataDir(dataDir, as)
	if err != nil {
		return nil, err
	}
	c.removeDataDir = cfg.Ephemeral && created
	if err := checkNotInUse(dataDir); err != nil {
		return nil, err
	}

	var initdbOutput []byte
	initialised := false
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if initdbOutput, err = initdb(ctx, binDir, dataDir, as, cfg.Ephemeral); err != nil {
			return nil, err
		}
		initialised = true
	} else if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}

	// The log is opened only now: initdb wants an empty directory.
	if c.logFile, err = openLog(c.logPath, as); err != nil {
		return nil, err
	}
	if len(initdbOutput) > 0 {
		_, _ = c.logFile.Write(initdbOutput) // the log is a diagnostic aid only
	}
	if cfg.SocketDir != "" {
		c.socketDir, c.keepSocketDir = cfg.SocketDir, true
	} else if c.socketDir, err = makeSocketDir(as); err != nil {
		return nil, err
	}
	if err := c.startPostgres(binDir, as, maxConns, cfg.Ephemeral); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	logger.InfoContext(ctx, "postgres started",
		slog.String("data_dir", dataDir),
		slog.String("socket_dir", c.socketDir),
		slog.String("log_file", c.logPath),
		slog.Bool("initdb", initialised),
		slog.Bool("ephemeral", cfg.Ephemeral),
		slog.Duration("duration", time.Since(begin)),
	)
	return c, nil
}

// PID returns the process id of the postmaster, the parent of every other
// server process of the cluster.
func (c *Cluster) PID() int { return c.cmd.Process.Pid }

// DataDir returns the cluster directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// LogFile returns the path of the file receiving the server's output.
func (c *Cluster) LogFile() string { return c.logPath }

// URL returns a postgres:// URL for database that connects as the superuser
// postgres over the cluster's Unix socket, without TLS. It is valid for pgx,
// libpq and golang-migrate.
func (c *Cluster) URL(database string) string {
	q := url.Values{}
	q.Set("host", c.socketDir)
	q.Set("port", strconv.Itoa(port))
	q.Set("sslmode", "disable")
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Path:     "/" + database,
		RawQuery: q.Encode(),
	}
	return u.String()
}

// BaseBackup copies the running cluster into dataDir with pg_basebackup
// (-R -X stream --checkpoint=fast, no manifest): the copy holds the WAL it needs,
// standby.signal and a primary_conninfo naming this cluster's socket, so
// that [Start] on dataDir runs a streaming replica of c (hot standby, read
// only). dataDir must not exist or be empty; [Cluster.Stop] of the replica
// leaves it in place (the caller removes it). pg_basebackup runs as the
// account postgres runs as. The cluster's pg_hba.conf (initdb's, trust)
// already allows local replication connections.
func (c *Cluster) BaseBackup(ctx context.Context, dataDir string) error {
	prog := filepath.Join(c.binDir, "pg_basebackup")
	if _, err := os.Stat(prog); err != nil {
		return fmt.Errorf("pg_basebackup not found beside postgres in %s (%w): %s", c.binDir, err, installHint)
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("base backup dir: %w", err)
	}
	if _, err := prepareDataDir(dataDir, c.as); err != nil {
		return err
	}
	conninfo := "host=" + c.socketDir + " port=" + strconv.Itoa(port) + " user=" + superuser + " sslmode=disable"
	cmd := exec.CommandContext(ctx, prog, "-D", dataDir, "-d", conninfo, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync", "--no-manifest")
	cmd.Dir = "/"
	cmd.Env = childEnv(c.as)
	cmd.SysProcAttr = sysProcAttr(c.as)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup into %s: %w\n%s", dataDir, err, tail(out, 20))
	}
	return nil
}

// Stop shuts the server down with a fast shutdown (SIGINT: open sessions are
// disconnected, the cluster is checkpointed) and waits for it to exit. If it
// has not exited after 10 seconds it gets SIGQUIT, then SIGKILL. Stop then
// removes the socket directory and, for an [Config.Ephemeral] cluster whose
// data directory [Start] created, the data directory.
//
// Stop is idempotent: later calls return the first call's result. It
// returns an error when the server had to be killed or had already exited on
// its own.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	var errs []error
	if c.cmd != nil {
		errs = append(errs, c.shutdown())
	}
	if c.logFile != nil {
		errs = append(errs, c.logFile.Close())
	}
	if c.socketDir != "" && !c.keepSocketDir {
		errs = append(errs, os.RemoveAll(c.socketDir))
	}
	if c.removeDataDir {
		errs = append(errs, os.RemoveAll(c.dataDir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	if c.cmd != nil {
		c.logger.Info("postgres stopped", slog.String("data_dir", c.dataDir))
	}
	return nil
}

// shutdown signals postgres and escalates until it has exited.
func (c *Cluster) shutdown() error {
	select {
	case <-c.exited:
		return fmt.Errorf("postgres had exited on its own: %w", c.exitErr)
	default:
	}
	steps := []struct {
		sig  os.Signal
		wait time.Duration
	}{
		{syscall.SIGINT, stopTimeout},
		{syscall.SIGQUIT, quitTimeout},
	}
	for i, step := range steps {
		_ = c.cmd.Process.Signal(step.sig) // fails only if it has just exited
		timer := time.NewTimer(step.wait)
		select {
		case <-c.exited:
			timer.Stop()
			if i == 0 {
				return nil
			}
			return fmt.Errorf("postgres ignored SIGINT for %s and needed SIGQUIT", stopTimeout)
		case <-timer.C:
		}
	}
	killGroup(c.cmd.Process.Pid)
	<-c.exited
	return fmt.Errorf("postgres did not stop within %s and was killed", stopTimeout+quitTimeout)
}

// startPostgres runs the server as a child writing to the log file.
func (c *Cluster) startPostgres(binDir string, as *runAs, maxConns int, ephemeral bool) error {
	args := []string{
		"-D", c.dataDir,
		"-k", c.socketDir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=",
		"-c", "unix_socket_permissions=0700",
		"-c", "max_connections=" + strconv.Itoa(maxConns),
	}
	if ephemeral {
		args = append(args,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
		)
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	cmd.Dir = "/" // the caller's cwd may not be readable by the postgres user
	cmd.Env = childEnv(as)
	cmd.Stdout = c.logFile
	cmd.Stderr = c.logFile
	cmd.SysProcAttr = sysProcAttr(as)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd = cmd
	go func() {
		c.exitErr = cmd.Wait()
		close(c.exited)
	}()
	return nil
}

// waitReady connects until the server answers, postgres exits, or time runs
// out.
func (c *Cluster) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	connURL := c.URL("postgres")
	for {
		select {
		case <-c.exited:
			return c.exitedEarly()
		default:
		}
		err := ping(ctx, connURL)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for postgres: %w", ctx.Err())
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "57P03" { // cannot_connect_now: starting up or recovering
			deadline = time.Now().Add(readyTimeout)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within %s: %w\n%s", readyTimeout, err, c.logTail())
		}
		timer := time.NewTimer(readyInterval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("wait for postgres: %w", ctx.Err())
		case <-c.exited:
			timer.Stop()
			return c.exitedEarly()
		case <-timer.C:
		}
	}
}

func ping(ctx context.Context, connURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// exitedEarly describes a postgres that died during the start.
func (c *Cluster) exitedEarly() error {
	tail := c.logTail()
	if strings.Contains(tail, `lock file "postmaster.pid" already exists`) {
		return fmt.Errorf("%w: %s\n%s", ErrDataDirInUse, c.dataDir, tail)
	}
	return fmt.Errorf("postgres exited during start (%w); its log %s ends with:\n%s", c.exitErr, c.logPath, tail)
}

// logTail returns the last lines of the server log.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return tail(b, 20)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// initdb creates the cluster and returns initdb's output.
func initdb(ctx context.Context, binDir, dataDir string, as *runAs, ephemeral bool) ([]byte, error) {
	args := []string{
		"-D", dataDir,
		"--auth=trust",
		"--username=" + superuser,
		"--encoding=UTF8",
		"--locale=C",
	}
	if ephemeral {
		args = append(args, "-N")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
	cmd.Dir = "/"
	// TZ=UTC spares initdb its time zone probe and makes UTC the cluster's
	// default; pgx reads timestamptz in binary, so clients are unaffected.
	cmd.Env = append(childEnv(as), "TZ=UTC")
	cmd.SysProcAttr = sysProcAttr(as)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("initdb %s: %w\n%s", dataDir, err, tail(out, 20))
	}
	return out, nil
}

// childEnv is the environment of initdb and postgres: ours without the PG*
// variables (PGPORT, PGDATA... would change what they do), with HOME and
// USER of the account they run as.
func childEnv(as *runAs) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		if as != nil && (strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "USER=") || strings.HasPrefix(kv, "LOGNAME=")) {
			continue
		}
		env = append(env, kv)
	}
	if as != nil {
		env = append(env, "HOME="+as.home, "USER="+as.name, "LOGNAME="+as.name)
	}
	return env
}

// lookupRunAs returns the account to run postgres as: nil unless Fossil runs
// as root, the system user postgres otherwise.
func lookupRunAs() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(systemUser)
	if err != nil {
		return nil, fmt.Errorf("running as root: PostgreSQL refuses to run as root, so Fossil runs it as the system user %q, "+
			"which does not exist; create it (useradd --system --user-group --home-dir /var/lib/postgresql %s) "+
			"or run Fossil as an unprivileged user: %w", systemUser, systemUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", systemUser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", systemUser, u.Gid, err)
	}
	as := &runAs{name: u.Username, home: u.HomeDir, uid: uint32(uid), gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				as.groups = append(as.groups, uint32(g))
			}
		}
	}
	if len(as.groups) == 0 {
		as.groups = []uint32{as.gid}
	}
	if as.home == "" {
		as.home = "/"
	}
	return as, nil
}

// prepareDataDir makes sure dataDir exists and can be used by the account
// postgres runs as. It reports whether it created the directory.
func prepareDataDir(dataDir string, as *runAs) (created bool, err error) {
	fi, err := os.Stat(dataDir)
	switch {
	case err == nil && !fi.IsDir():
		return false, fmt.Errorf("data dir %s is not a directory", dataDir)
	case errors.Is(err, fs.ErrNotExist):
		if err := mkdirAllTraversable(filepath.Dir(dataDir)); err != nil {
			return false, err
		}
		if as != nil {
			if err := checkTraversable(dataDir, as); err != nil {
				return false, err
			}
		}
		if err := os.Mkdir(dataDir, 0o700); err != nil {
			return false, fmt.Errorf("data dir: %w", err)
		}
		created = true
	case err != nil:
		return false, fmt.Errorf("data dir: %w", err)
	}
	if as == nil {
		return created, nil
	}
	if err := checkTraversable(dataDir, as); err != nil {
		return created, err
	}
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := os.Chown(dataDir, int(as.uid), int(as.gid)); err != nil {
			return created, fmt.Errorf("data dir: %w", err)
		}
		if err := os.Chmod(dataDir, 0o700); err != nil {
			return created, fmt.Errorf("data dir: %w", err)
		}
	}
	return created, nil
}

// mkdirAllTraversable is os.MkdirAll that gives every directory it creates
// mode 0755 whatever the umask, so that the postgres user can reach the
// data directory when Fossil runs as root.
func mkdirAllTraversable(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("data dir parent: %w", err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("data dir parent: %w", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("data dir parent: %w", err)
		}
	}
	return nil
}

// checkTraversable fails with a clear message when a parent of dataDir
// cannot be searched by the account postgres runs as; postgres would
// otherwise stop with a bare "Permission denied".
func checkTraversable(dataDir string, as *runAs) error {
	for d := filepath.Dir(dataDir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("data dir parent: %w", err)
		}
		if !canSearch(fi, as) {
			return fmt.Errorf("data dir %s: its parent %s (mode %#o) cannot be entered by the user %s that PostgreSQL runs as; "+
				"chmod o+x %s or choose another data directory", dataDir, d, uint32(fi.Mode().Perm()), as.name, d)
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

// checkNotInUse refuses a data directory whose postmaster.pid names a live
// process. A stale file left by a killed server is fine: postgres removes it.
func checkNotInUse(dataDir string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return nil //nolint:nilerr // no pid file, or unreadable: postgres decides
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return nil //nolint:nilerr // malformed: postgres decides
	}
	if processAlive(pid) {
		return fmt.Errorf("%w: %s (postmaster pid %d); stop that server or choose another data directory",
			ErrDataDirInUse, dataDir, pid)
	}
	return nil
}

// openLog opens the server log for appending, moving an oversized one
// aside first.
func openLog(path string, as *runAs) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > logRotateSize {
		_ = os.Rename(path, path+".1") // keeping the old log is best effort
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("postgres log: %w", err)
	}
	if as != nil {
		if err := f.Chown(int(as.uid), int(as.gid)); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("postgres log: %w", err)
		}
	}
	return f, nil
}

// NewSocketDir creates a private directory for a server's socket, as
// [Start] does, for [Config.SocketDir]: a server restarted on it keeps its
// address. The caller removes it.
func NewSocketDir() (string, error) {
	as, err := lookupRunAs()
	if err != nil {
		return "", err
	}
	return makeSocketDir(as)
}

// makeSocketDir creates a private directory for the server's socket, short
// enough for the socket path limit.
func makeSocketDir(as *runAs) (string, error) {
	socketName := ".s.PGSQL." + strconv.Itoa(port)
	var dir string
	for _, parent := range []string{os.TempDir(), "/tmp"} {
		d, err := os.MkdirTemp(parent, "fossil-pg-")
		if err != nil {
			continue
		}
		if len(filepath.Join(d, socketName)) <= maxSocketPath {
			dir = d
			break
		}
		_ = os.Remove(d)
	}
	if dir == "" {
		return "", fmt.Errorf("socket dir: no directory under %s or /tmp gives a socket path of at most %d bytes", os.TempDir(), maxSocketPath)
	}
	if as != nil {
		// 0700 and owned by postgres: root can still connect, other local
		// users cannot reach the trust-authenticated socket.
		if err := os.Chown(dir, int(as.uid), int(as.gid)); err != nil {
			_ = os.Remove(dir)
			return "", fmt.Errorf("socket dir: %w", err)
		}
	}
	return dir, nil
}

// DefaultDataDir returns where `fossil server` keeps its managed cluster:
// /var/lib/fossil/pgdata when running as root, else
// $XDG_DATA_HOME/fossil/pgdata, else ~/.local/share/fossil/pgdata.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/fossil/pgdata"
	}
	if xdg := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(xdg) {
		return filepath.Join(xdg, "fossil", "pgdata")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "fossil", "pgdata")
	}
	return filepath.Join(os.TempDir(), "fossil-"+strconv.Itoa(os.Getuid()), "pgdata")
}
