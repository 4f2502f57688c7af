package main

import (
	"os"
	"testing"

	"github.com/example/sessionauth/internal/pgtest"
)

// TestMain drops the package's template database once every test has run.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
