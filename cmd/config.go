package cmd

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration of a Fossil server. Defaults are set by
// [DefaultConfig]; environment variables override them and flags override
// both.
type Config struct {
	DatabaseURL       string        // DATABASE_URL; empty: manage a local PostgreSQL in DataDir
	ReadDatabaseURLs  []string      // FOSSIL_READ_DATABASE_URL; streaming replicas for catch-up reads
	ReadMaxLag        time.Duration // FOSSIL_READ_MAX_LAG; a replica lagging more is not read
	DataDir           string        // FOSSIL_DATA_DIR; the managed cluster's directory
	Addr              string        // FOSSIL_ADDR
	NoMigrate         bool          // FOSSIL_NO_MIGRATE; do not apply migrations at start
	JWTSecret         string        // JWT_SECRET; enables auth
	JWTPreviousSecret string        // JWT_PREVIOUS_SECRET
	JWTPublicKeyFile  string        // JWT_PUBLIC_KEY_FILE
	SSEKeepalive      time.Duration // FOSSIL_SSE_KEEPALIVE
	SSEWriteTimeout   time.Duration // FOSSIL_SSE_WRITE_TIMEOUT; a client that does not read for this long is disconnected
	MaxBody           int64         // FOSSIL_MAX_BODY
	BodyTimeout       time.Duration // FOSSIL_BODY_TIMEOUT; how long a request body may take to arrive
	WaitTimeout       time.Duration // FOSSIL_WAIT_TIMEOUT; default wait-for-ack timeout
	MaxWaitTimeout    time.Duration // FOSSIL_MAX_WAIT_TIMEOUT; cap on wait-for-ack timeouts
	AppendTimeout     time.Duration // FOSSIL_APPEND_TIMEOUT; how long /collect waits for its commit
	PollInterval      time.Duration // FOSSIL_POLL_INTERVAL; fallback poll of the log head
	PollOnly          bool          // FOSSIL_POLL_ONLY; no LISTEN (for PgBouncer transaction pooling)
	MaxSSEClients     int           // FOSSIL_MAX_SSE_CLIENTS; 503 beyond
	MaxConns          int           // FOSSIL_MAX_CONNS; database pool size
	MemoryLimit       int64         // FOSSIL_MEMORY_LIMIT; Go soft memory limit in bytes, 0: GOMEMLIMIT or 90 % of the cgroup limit
	ShutdownTimeout   time.Duration // FOSSIL_SHUTDOWN_TIMEOUT
	LogLevel          string        // FOSSIL_LOG_LEVEL: debug, info, warn, error
	LogFormat         string        // FOSSIL_LOG_FORMAT: text or json
	PprofAddr         string        // FOSSIL_PPROF_ADDR; loopback address for net/http/pprof, empty: off
	SubscriptionLease time.Duration // FOSSIL_SUBSCRIPTION_LEASE; how long a dead process keeps its subscriptions
	AdvertiseURL      string        // FOSSIL_ADVERTISE_URL; how other Fossil processes reach this one, empty: derived from the listen address
	// SubscriptionBackoff, when positive, replaces the first retry delay
	// of subscriptions (1s); tests shorten it. No flag or variable sets it.
	SubscriptionBackoff time.Duration
	SigningKeyFile      string // FOSSIL_SIGNING_KEY_FILE; note signer key for checkpoints, empty: a key kept in the database
	LogOrigin           string // FOSSIL_LOG_ORIGIN; the checkpoints' origin line
	// TreeWatchInterval, when positive, replaces how often the tree
	// builder checks that the tree holds every event (2s); tests lengthen
	// it. No flag or variable sets it.
	TreeWatchInterval time.Duration
	// StatsInterval, when positive, replaces how often GET /stats samples
	// the head (5s); tests shorten it. No flag or variable sets it.
	StatsInterval time.Duration

	maxBodyFlag  *int
	memLimitFlag *int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		SSEKeepalive:      15 * time.Second,
		SSEWriteTimeout:   30 * time.Second,
		MaxBody:           1 << 20,
		BodyTimeout:       30 * time.Second,
		WaitTimeout:       5 * time.Second,
		MaxWaitTimeout:    60 * time.Second,
		AppendTimeout:     15 * time.Second,
		PollInterval:      time.Second,
		SubscriptionLease: 5 * time.Second,
		MaxSSEClients:     20000,
		MaxConns:          20,
		ShutdownTimeout:   10 * time.Second,
		LogLevel:          "info",
		LogFormat:         "text",
		LogOrigin:         "fossil",
		ReadMaxLag:        30 * time.Second,
	}
}

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid configuration")

// ConfigError names the setting that is wrong.
type ConfigError struct {
	Setting string
	Err     error
}

func (e *ConfigError) Error() string { return e.Setting + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// Validate checks value ranges.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return &ConfigError{"addr", errors.New("must not be empty")}
	case c.SSEKeepalive <= 0:
		return &ConfigError{"sse-keepalive", errors.New("must be positive")}
	case c.SSEWriteTimeout <= 0:
		return &ConfigError{"sse-write-timeout", errors.New("must be positive")}
	case c.MaxBody < 64<<10:
		return &ConfigError{"max-body", errors.New("must be at least 65536 bytes")}
	case c.BodyTimeout <= 0:
		return &ConfigError{"body-timeout", errors.New("must be positive")}
	case c.WaitTimeout <= 0 || c.MaxWaitTimeout < c.WaitTimeout:
		return &ConfigError{"wait-timeout", errors.New("must be positive and at most max-wait-timeout")}
	case c.AppendTimeout <= 0:
		return &ConfigError{"append-timeout", errors.New("must be positive")}
	case c.SubscriptionLease < 300*time.Millisecond:
		return &ConfigError{"subscription-lease", errors.New("must be at least 300ms")}
	case c.AdvertiseURL != "" && !validAdvertiseURL(c.AdvertiseURL):
		return &ConfigError{"advertise-url", errors.New("must be an http:// or https:// URL with a host, such as http://10.0.0.7:8080")}
	case c.PollInterval < 10*time.Millisecond:
		return &ConfigError{"poll-interval", errors.New("must be at least 10ms")}
	case c.MaxSSEClients <= 0:
		return &ConfigError{"max-sse-clients", errors.New("must be positive")}
	case c.MemoryLimit < 0:
		return &ConfigError{"memory-limit", errors.New("must not be negative")}
	case c.ReadMaxLag <= 0:
		return &ConfigError{"read-max-lag", errors.New("must be positive")}
	case len(c.ReadDatabaseURLs) > 0 && c.DatabaseURL == "":
		return &ConfigError{"read-database-url", errors.New("needs database-url: a managed local PostgreSQL has no replicas")}
	case c.MaxConns < 4:
		return &ConfigError{"max-conns", errors.New("must be at least 4")}
	case c.PprofAddr != "" && !isLoopbackAddr(c.PprofAddr):
		return &ConfigError{"pprof-addr", errors.New("must be a loopback host:port such as 127.0.0.1:6060")}
	case c.LogOrigin == "" || strings.ContainsAny(c.LogOrigin, "\n+ "):
		return &ConfigError{"log-origin", errors.New("must be one non-empty line without spaces or '+'")}
	case c.LogFormat != "text" && c.LogFormat != "json":
		return &ConfigError{"log-format", errors.New("must be text or json")}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return &ConfigError{"log-level", err}
	}
	return nil
}

// envLookup reads one environment variable; tests replace it.
type envLookup func(string) (string, bool)

// bindFlags registers the server flags on fs, with defaults taken from the
// environment so that flags win over env, and env over built-in defaults.
func (c *Config) bindFlags(fs *flag.FlagSet, env envLookup) error {
	var errs []error
	str := func(p *string, name, envName, usage string) {
		if v, ok := env(envName); ok {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" ($"+envName+")")
	}
	dur := func(p *time.Duration, name, envName, usage string) {
		if v, ok := env(envName); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, &ConfigError{envName, err})
			}
			*p = d
		}
		fs.DurationVar(p, name, *p, usage+" ($"+envName+")")
	}
	boolean := func(p *bool, name, envName, usage string) {
		if v, ok := env(envName); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, &ConfigError{envName, err})
			}
			*p = b
		}
		fs.BoolVar(p, name, *p, usage+" ($"+envName+")")
	}
	integer := func(p *int, name, envName, usage string) {
		if v, ok := env(envName); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, &ConfigError{envName, err})
			}
			*p = n
		}
		fs.IntVar(p, name, *p, usage+" ($"+envName+")")
	}
	// secret reads a setting from the first set of envNames, or from the
	// file named by one of them with _FILE appended (the container
	// convention for secrets); the flag still wins.
	secret := func(p *string, name string, envNames []string, usage string) {
		if v, err := lookupSecret(env, envNames...); err != nil {
			errs = append(errs, err)
		} else if v != "" {
			*p = v
		}
		if name != "" {
			fs.StringVar(p, name, *p, usage+" ($"+strings.Join(envNames, ", $")+", or a file named by $…_FILE)")
		}
	}
	secret(&c.DatabaseURL, "database-url", []string{"DATABASE_URL"}, "PostgreSQL URL; empty runs a managed local PostgreSQL")
	var readURLs string
	secret(&readURLs, "", []string{"FOSSIL_READ_DATABASE_URL"}, "")
	c.ReadDatabaseURLs = splitDatabaseURLs(readURLs)
	fs.Var(&urlList{urls: &c.ReadDatabaseURLs}, "read-database-url", "a streaming replica of the database for catch-up reads; repeat the flag, or separate URLs with commas, for several "+
		"($FOSSIL_READ_DATABASE_URL, or a file named by $FOSSIL_READ_DATABASE_URL_FILE)")
	dur(&c.ReadMaxLag, "read-max-lag", "FOSSIL_READ_MAX_LAG", "a replica lacking an event the primary has had for longer than this is not read until it catches up")
	str(&c.DataDir, "data-dir", "FOSSIL_DATA_DIR", "data directory of the managed PostgreSQL (used without a database URL)")
	str(&c.Addr, "addr", "FOSSIL_ADDR", "listen address")
	boolean(&c.NoMigrate, "no-migrate", "FOSSIL_NO_MIGRATE", "do not apply pending migrations at start")
	secret(&c.JWTSecret, "jwt-secret", []string{"FOSSIL_JWT_SECRET", "JWT_SECRET"}, "HS256 secret; enables authentication")
	secret(&c.JWTPreviousSecret, "jwt-previous-secret", []string{"FOSSIL_JWT_PREVIOUS_SECRET", "JWT_PREVIOUS_SECRET"}, "previous HS256 secret, still accepted during a roll-over")
	if v, err := lookupAlias(env, "FOSSIL_JWT_PUBLIC_KEY_FILE", "JWT_PUBLIC_KEY_FILE"); err != nil {
		errs = append(errs, err)
	} else if v != "" {
		c.JWTPublicKeyFile = v
	}
	fs.StringVar(&c.JWTPublicKeyFile, "jwt-public-key-file", c.JWTPublicKeyFile, "PEM public key for RS256/ES256 tokens ($FOSSIL_JWT_PUBLIC_KEY_FILE, $JWT_PUBLIC_KEY_FILE)")
	dur(&c.SSEKeepalive, "sse-keepalive", "FOSSIL_SSE_KEEPALIVE", "interval between keepalive comments on idle SSE streams")
	dur(&c.SSEWriteTimeout, "sse-write-timeout", "FOSSIL_SSE_WRITE_TIMEOUT", "how long an SSE client may stop reading before it is disconnected (it resumes with Last-Event-Id)")
	maxBody := int(c.MaxBody)
	integer(&maxBody, "max-body", "FOSSIL_MAX_BODY", "largest accepted request body in bytes")
	dur(&c.BodyTimeout, "body-timeout", "FOSSIL_BODY_TIMEOUT", "how long a request body may take to arrive after its headers; slower clients get 408")
	dur(&c.WaitTimeout, "wait-timeout", "FOSSIL_WAIT_TIMEOUT", "default wait-for-ack timeout")
	dur(&c.MaxWaitTimeout, "max-wait-timeout", "FOSSIL_MAX_WAIT_TIMEOUT", "cap on wait-for-ack timeouts")
	dur(&c.AppendTimeout, "append-timeout", "FOSSIL_APPEND_TIMEOUT", "how long /collect waits for its commit before answering 503")
	dur(&c.PollInterval, "poll-interval", "FOSSIL_POLL_INTERVAL", "fallback poll interval of the log head")
	dur(&c.SubscriptionLease, "subscription-lease", "FOSSIL_SUBSCRIPTION_LEASE", "how long a dead process keeps the subscriptions it delivered")
	str(&c.AdvertiseURL, "advertise-url", "FOSSIL_ADVERTISE_URL", "URL at which the other Fossil processes on the database reach this one; pull members and acks reaching a process that does not serve their subscription are forwarded there (empty: http:// and the listen address, with a wildcard host replaced by this machine's first non-loopback address)")
	boolean(&c.PollOnly, "poll-only", "FOSSIL_POLL_ONLY", "do not LISTEN; rely on polling (PgBouncer transaction pooling)")
	integer(&c.MaxSSEClients, "max-sse-clients", "FOSSIL_MAX_SSE_CLIENTS", "most concurrent SSE streams; more get 503")
	integer(&c.MaxConns, "max-conns", "FOSSIL_MAX_CONNS", "database connection pool size")
	memLimit := int(c.MemoryLimit)
	integer(&memLimit, "memory-limit", "FOSSIL_MEMORY_LIMIT", "soft memory limit of the Go runtime in bytes (0: GOMEMLIMIT, else 90% of the container's cgroup limit, else none)")
	c.memLimitFlag = &memLimit
	dur(&c.ShutdownTimeout, "shutdown-timeout", "FOSSIL_SHUTDOWN_TIMEOUT", "how long a graceful shutdown waits")
	str(&c.LogLevel, "log-level", "FOSSIL_LOG_LEVEL", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "FOSSIL_LOG_FORMAT", "text or json")
	str(&c.PprofAddr, "pprof-addr", "FOSSIL_PPROF_ADDR", "serve net/http/pprof on this loopback address, e.g. 127.0.0.1:6060 (off when empty)")
	str(&c.SigningKeyFile, "signing-key-file", "FOSSIL_SIGNING_KEY_FILE", "file holding the note signer key of checkpoints (fossil keygen); without it a key is generated and kept in the database")
	str(&c.LogOrigin, "log-origin", "FOSSIL_LOG_ORIGIN", "origin line of checkpoints (the log's name)")
	c.maxBodyFlag = &maxBody
	return errors.Join(errs...)
}

// finish copies values that flags hold in other types.
func (c *Config) finish() {
	if c.maxBodyFlag != nil {
		c.MaxBody = int64(*c.maxBodyFlag)
	}
	if c.memLimitFlag != nil {
		c.MemoryLimit = int64(*c.memLimitFlag)
	}
}

// lookupAlias returns the value of the first of names that is set; names
// set to different values are a configuration error.
func lookupAlias(env envLookup, names ...string) (string, error) {
	var val, from string
	for _, n := range names {
		v, ok := env(n)
		if !ok {
			continue
		}
		if from != "" && v != val {
			return "", &ConfigError{n, fmt.Errorf("set to another value than %s: set only one", from)}
		}
		if from == "" {
			val, from = v, n
		}
	}
	return val, nil
}

// lookupSecret returns the value of the first of names that is set, or the
// content of the file named by the first of the names with _FILE appended
// (without its final line break). Both is a configuration error.
func lookupSecret(env envLookup, names ...string) (string, error) {
	val, err := lookupAlias(env, names...)
	if err != nil {
		return "", err
	}
	fileNames := make([]string, len(names))
	for i, n := range names {
		fileNames[i] = n + "_FILE"
	}
	path, err := lookupAlias(env, fileNames...)
	if err != nil || path == "" {
		return val, err
	}
	if val != "" {
		return "", &ConfigError{names[0] + "_FILE", fmt.Errorf("both %s and a _FILE variant are set: set only one", strings.Join(names, "/"))}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &ConfigError{names[0] + "_FILE", err}
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", &ConfigError{names[0] + "_FILE", fmt.Errorf("%s is empty", path)}
	}
	return v, nil
}

// urlList is the value of a repeatable flag of database URLs: the first
// use replaces the environment's list, later ones add to it. Each use may
// hold several URLs (see splitDatabaseURLs).
type urlList struct {
	urls *[]string
	set  bool
}

func (l *urlList) String() string {
	if l.urls == nil {
		return ""
	}
	return strconv.Itoa(len(*l.urls)) + " URLs" // never the URLs: they may hold passwords
}

func (l *urlList) Set(v string) error {
	if !l.set {
		*l.urls, l.set = nil, true
	}
	*l.urls = append(*l.urls, splitDatabaseURLs(v)...)
	return nil
}

// splitDatabaseURLs splits a list of database URLs separated by commas or
// line breaks. A comma separates URLs only where a postgres:// or
// postgresql:// URL follows it, so that a multi-host URL
// (postgres://a,b/db) stays one.
func splitDatabaseURLs(v string) []string {
	var out []string
	for _, line := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
		parts := strings.Split(line, ",")
		var cur string
		for i, p := range parts {
			t := strings.TrimSpace(p)
			if i > 0 && (strings.HasPrefix(t, "postgres://") || strings.HasPrefix(t, "postgresql://")) {
				if c := strings.TrimSpace(cur); c != "" {
					out = append(out, c)
				}
				cur = t
				continue
			}
			if i > 0 {
				cur += ","
			}
			cur += p
		}
		if c := strings.TrimSpace(cur); c != "" {
			out = append(out, c)
		}
	}
	return out
}

func osEnv(name string) (string, bool) {
	v, ok := os.LookupEnv(name)
	if ok && v == "" {
		return "", false
	}
	return v, ok
}

func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

func validAdvertiseURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" && u.Fragment == ""
}

// advertiseURL returns the URL other Fossil processes use to reach this
// one: the configured one, else http:// and the listen address, with a
// wildcard host replaced by the first non-loopback address of this machine
// (loopback when it has none).
func advertiseURL(configured string, addr net.Addr) string {
	if configured != "" {
		return strings.TrimRight(configured, "/")
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return ""
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.IsGlobalUnicast() {
					ip = n.IP
					break
				}
			}
		}
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}
