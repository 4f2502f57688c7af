// Package migrations embeds the SQL migrations of each backend, discovered
// by bun/migrate: postgres/ for PostgreSQL, sqlite/ for the embedded SQLite
// file of development mode. Every migration exists in both directories under
// the same name, saying the same thing in each backend's SQL.
package migrations

import (
	"embed"
	"io/fs"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/migrate"
)

//go:embed postgres/*.sql
var postgresFiles embed.FS

//go:embed sqlite/*.sql
var sqliteFiles embed.FS

// Postgres and SQLite are the ordered schema migrations of each backend.
var (
	Postgres = discover(postgresFiles, "postgres")
	SQLite   = discover(sqliteFiles, "sqlite")
)

func discover(files embed.FS, dir string) *migrate.Migrations {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic(err)
	}
	m := migrate.NewMigrations()
	if err := m.Discover(sub); err != nil {
		panic(err)
	}
	return m
}

// For returns the migrations of db's backend.
func For(db *bun.DB) *migrate.Migrations {
	if db.Dialect().Name() == dialect.SQLite {
		return SQLite
	}
	return Postgres
}
