package testkit

import (
	"net"
	"net/url"
	"testing"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/tcpproxy"
)

// ProxiedDatabase creates a fresh migrated database and a proxy in front of
// it, for tests of faults between a server and its database. It returns the
// database's URL through the proxy, its direct URL (for the test's own
// checks) and the proxy. On SQLite, which has no network, it skips t.
func ProxiedDatabase(t *testing.T) (viaProxy, direct string, proxy *tcpproxy.Proxy) {
	t.Helper()
	pgtest.PostgresOnly(t, "it cuts the network between the server and its database, and an embedded SQLite file has none")
	direct = pgtest.New(t)
	u, err := url.Parse(direct)
	if err != nil || u.Hostname() == "" {
		t.Fatalf("TEST_DATABASE_URL must be a postgres://host:port/… URL for the fault tests, got %q", pgtest.BaseURL())
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	proxy, err = tcpproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	u.Host = proxy.Addr()
	return u.String(), direct, proxy
}

// OpenDirect opens the test's own pool on the database at url, bypassing
// any proxy; it closes when t ends.
func OpenDirect(t testing.TB, url string) *bun.DB {
	t.Helper()
	db := pgtest.Open(url)
	t.Cleanup(func() { db.Close() })
	return db
}
