package auth

import (
	"os"
	"testing"

	"github.com/uptrace/bun/dialect"

	"github.com/example/sessionauth/internal/pgtest"
)

// TestMain drops the package's template database once every test has run.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// isSQLite reports whether s runs on the embedded SQLite file, for tests
// that run PostgreSQL-only statements (ANALYZE) where they can.
func (s *Service) isSQLite() bool { return s.db.Dialect().Name() == dialect.SQLite }
