package database_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/example/sessionauth/internal/database"
)

func TestParse(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in string
		want     database.Source
	}{
		{"EmptyIsTheDefaultFile", "", database.Source{Backend: database.SQLite, Path: filepath.Join(wd, "sessionauth.db")}},
		{"Postgres", "postgres://u:pw@db:5432/app?sslmode=require", database.Source{Backend: database.Postgres, URL: "postgres://u:pw@db:5432/app?sslmode=require"}},
		{"PostgreSQL", "postgresql://db/app", database.Source{Backend: database.Postgres, URL: "postgresql://db/app"}},
		{"SQLiteAbsolute", "sqlite:///var/lib/app/data.db", database.Source{Backend: database.SQLite, Path: "/var/lib/app/data.db"}},
		{"SQLiteRelative", "sqlite:data/dev.db", database.Source{Backend: database.SQLite, Path: filepath.Join(wd, "data/dev.db")}},
		{"SQLiteAbsoluteOpaque", "sqlite:/tmp/x.db", database.Source{Backend: database.SQLite, Path: "/tmp/x.db"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := database.Parse(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, in := range []string{
		"mysql://u:secret-pw@db/app",
		"db.sqlite",
		"sqlite:",
		"sqlite://host/data.db",
		"sqlite:dev.db?mode=ro",
		"postgres://u:secret-pw@db:port/app",
		"postgres:u:secret-pw@db/app",                    // opaque: no telling where the password is
		"host=db user=app password=secret-pw dbname=app", // libpq keyword/value: not accepted
		"postgres://u:secret-pw%zz@db/app",               // the bad escape is in the password
	} {
		_, err := database.Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) accepted it", in)
			continue
		}
		if strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("Parse(%q): the error repeats the password: %v", in, err)
		}
	}
}

func TestSourceStringHidesThePassword(t *testing.T) {
	src, err := database.Parse("postgres://app:secret-pw@db:5432/app")
	if err != nil {
		t.Fatal(err)
	}
	if s := src.String(); strings.Contains(s, "secret-pw") || !strings.Contains(s, "db:5432/app") {
		t.Fatalf("String() = %q", s)
	}
}

// TestSourceStringRedacts lists every place a PostgreSQL URL can carry a
// secret; none may survive String, which is what logs and errors show.
func TestSourceStringRedacts(t *testing.T) {
	tests := []struct {
		name, url string
		keep      []string // what an operator needs to see, still shown
	}{
		{"UserinfoPassword", "postgres://app:secret-1@db:5432/app?sslmode=verify-full", []string{"app:xxxxx@db:5432/app", "sslmode=verify-full"}},
		{"PasswordParam", "postgres://app@db/app?password=secret-1&sslmode=require", []string{"sslmode=require", "password=xxxxx"}},
		{"EncodedParamName", "postgres://db/app?pass%77ord=secret-1", nil},
		{"UpperCaseParam", "postgres://db/app?PASSWORD=secret-1", nil},
		{"RepeatedParam", "postgres://db/app?password=a&password=secret-1", nil},
		{"SSLPassword", "postgres://db/app?sslpassword=secret-1&sslkey=/etc/secret-1.key", []string{"sslpassword=xxxxx"}},
		{"Passfile", "postgres://db/app?passfile=/home/secret-1/.pgpass", nil},
		{"AnyNameWithSecretOrToken", "postgres://db/app?api_secret=secret-1&auth_token=secret-1&x_key=secret-1", nil},
		{"UnknownRuntimeParam", "postgres://db/app?app.tenant_credential=secret-1&application_name=svc", []string{"application_name=svc"}},
		{"Options", "postgres://db/app?options=-c%20app.pw%3Dsecret-1", nil},
		{"BothPasswords", "postgresql://app:secret-1@db/app?password=secret-1", nil},
		{"UpperCaseScheme", "POSTGRES://app:secret-1@db/app", []string{"db/app"}},
		{"Fragment", "postgres://db/app#secret-1", nil},
		{"SemicolonPair", "postgres://db/app?sslmode=disable;password=secret-1", nil},
		{"MultipleHosts", "postgres://app:secret-1@db1:5432,db2:5432/app", []string{"db1:5432,db2:5432"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := database.Parse(tt.url)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := src.String()
			if strings.Contains(got, "secret-1") {
				t.Fatalf("String() = %q shows a secret", got)
			}
			for _, k := range tt.keep {
				if !strings.Contains(got, k) {
					t.Errorf("String() = %q lacks %q", got, k)
				}
			}
		})
	}
}

// TestSQLiteFileIsPrivate opens a new SQLite database and writes to it: the
// file and the -wal and -shm files SQLite creates beside it are readable by
// their owner only (SQLite alone creates them 0644 under the usual umask 022).
func TestSQLiteFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	db, err := database.Open(database.Source{Backend: database.SQLite, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	for _, p := range database.SQLiteFiles(path) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// TestTightenSQLite narrows files an earlier version left readable by all,
// and leaves private and missing ones alone.
func TestTightenSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	for p, mode := range map[string]fs.FileMode{path: 0o644, path + "-wal": 0o600} {
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	got := database.TightenSQLite(path)
	if len(got) != 1 || got[0].Path != path || got[0].Mode != 0o644 || got[0].Err != nil {
		t.Fatalf("TightenSQLite = %+v, want the main file, found 0644, narrowed", got)
	}
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	if _, err := os.Stat(path + "-shm"); !os.IsNotExist(err) {
		t.Fatalf("a missing file was created: %v", err)
	}
	if again := database.TightenSQLite(path); len(again) != 0 {
		t.Fatalf("second call = %+v, want nothing to do", again)
	}
}

// TestOpenErrorRedacts: a URL that pgx cannot parse is refused by Open with
// an error that shows none of its secrets, though pgx's own would.
func TestOpenErrorRedacts(t *testing.T) {
	src, err := database.Parse("postgres://u:secret-1@db/app?api_token=secret-1&sslpassword=secret-1&connect_timeout=soon")
	if err != nil {
		t.Fatal(err)
	}
	_, err = database.Open(src)
	if err == nil || strings.Contains(err.Error(), "secret-1") || !strings.Contains(err.Error(), "connect_timeout") {
		t.Fatalf("Open: %v; want an error about connect_timeout that shows no secret", err)
	}
}
