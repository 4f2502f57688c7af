//go:build race

package testkit

// Race reports whether the tests were built with -race, so that a binary
// they build for themselves matches them (and reuses their cache).
const Race = true
