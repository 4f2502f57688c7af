package database_test

import (
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
