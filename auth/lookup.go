package auth

import (
	"context"
	"database/sql"
)

// lookupAccess reads the session whose access token hashes to h, with its
// user and the database's clock: the cache-miss path of every
// authenticated request. bun would inline h into the SQL, making every
// lookup a new text that PostgreSQL parses and plans from scratch (0.25 ms
// against 0.09 ms, BENCHMARKS.md); so the text is built once, with a
// parameter, and run with the dialect's QueryPrepared: on PostgreSQL as a
// statement prepared once per pooled connection, whatever the pool's
// default mode.
func (s *Service) lookupAccess(ctx context.Context, h []byte) (*identityRow, error) {
	s.lookupOnce.Do(func() {
		s.lookupSQL = s.db.NewSelect().Model((*identityRow)(nil)).
			ColumnExpr("session.*").ColumnExpr(s.dialect.Now+" AS db_now").
			Relation("User").
			Where("session.access_hash = ?", s.dialect.Placeholder(1)).
			String()
	})
	return s.scanIdentity(ctx)(s.dialect.QueryPrepared(ctx, s.db, s.lookupSQL, h))
}

// scanIdentity returns a function scanning the one row of a query's result
// into an identityRow (called on the query's results directly); no row is
// sql.ErrNoRows.
func (s *Service) scanIdentity(ctx context.Context) func(*sql.Rows, error) (*identityRow, error) {
	return func(rows *sql.Rows, err error) (*identityRow, error) {
		if err != nil {
			return nil, err
		}
		row := new(identityRow)
		if err := s.db.ScanRows(ctx, rows, row); err != nil {
			return nil, err
		}
		if row.ID == "" { // ScanRows leaves the model as it was when no row came
			return nil, sql.ErrNoRows
		}
		return row, nil
	}
}
