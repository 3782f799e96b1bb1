// Package pgmanaged runs a PostgreSQL cluster that Fossil manages itself.
//
// Two callers use it: `fossil server` without DATABASE_URL, which keeps a
// persistent cluster in [DefaultDataDir] (zero configuration), and the test
// helper internal/dbtest, which starts a throwaway [Config.Ephemeral] cluster
// per test binary. Both go through the same [Start], so every test run
// exercises the zero-config code path.
//
// # How the cluster runs
//
// [Start] creates the data directory with initdb when it holds no PG_VERSION
// file, then runs the postgres binary directly as a child process (not
// through pg_ctl). The server listens only on a Unix socket in a fresh, short
// directory under [os.TempDir] (socket paths are limited to about 107 bytes);
// TCP is off. Every local connection is trusted and the superuser is called
// postgres; [Cluster.URL] builds connection strings for it. The server's
// output goes to fossil-postgres.log in the data directory.
//
// On Linux the child gets the parent-death signal SIGTERM, so the server
// shuts down when the Fossil process dies, even by SIGKILL. It runs in its own
// process group so that a Ctrl-C in a terminal reaches Fossil only, which then
// stops the server with [Cluster.Stop].
//
// # Running as root
//
// PostgreSQL refuses to run as root. When the effective user is root, initdb
// and postgres run as the system user "postgres", which must exist; the data
// and socket directories are handed to that user, and every parent directory
// of the data directory must be traversable by it.
//
// # Platforms
//
// Linux and macOS (any Unix) are supported. On other systems [Start] returns
// an error; use an external server through DATABASE_URL there.
package pgmanaged
