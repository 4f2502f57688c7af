package testkit

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/pgtest"
)

// Tables lists the tables of db as its catalog shows them (not SQLite's
// own), for tests that look at everything stored without knowing the
// schema.
func Tables(t testing.TB, db *bun.DB) []string {
	t.Helper()
	list := `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	if pgtest.SQLite() {
		list = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
	}
	var tables []string
	if err := db.NewRaw(list).Scan(Context(t), &tables); err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	return tables
}

// Rows reads every row of table, every column as the driver returns it
// (byte strings copied).
func Rows(t testing.TB, db *bun.DB, table string) (columns []string, rows [][]any) {
	t.Helper()
	rs, err := db.QueryContext(Context(t), fmt.Sprintf("SELECT * FROM %q", table))
	if err != nil {
		t.Fatalf("dumping %s: %v", table, err)
	}
	defer rs.Close()
	if columns, err = rs.Columns(); err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		values := make([]any, len(columns))
		ptrs := make([]any, len(columns))
		for i := range values {
			ptrs[i] = &values[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatalf("dumping %s: %v", table, err)
		}
		for i, v := range values {
			if b, ok := v.([]byte); ok {
				values[i] = bytes.Clone(b)
			}
		}
		rows = append(rows, values)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return columns, rows
}
