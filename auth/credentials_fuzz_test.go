package auth

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCredentials feeds arbitrary sign-up and login input to the validation
// that runs before any hashing or database access. It must never panic, and
// whatever it accepts must be within API.md's limits.
func FuzzCredentials(f *testing.F) {
	f.Add("ada@example.com", "correct horse", "laptop", true)
	f.Add("  Ada@Example.COM ", "12345678", "", false)
	f.Add("not-an-email", "short", "x", true)
	f.Add("a <a@b.co>", strings.Repeat("p", 129), strings.Repeat("d", 101), true)
	f.Add("a@b.co\x00", "pass\x00word", "dev\x00ice", false)
	f.Add("\"quoted local\"@example.com", strings.Repeat("é", 128), strings.Repeat("é", 100), true)
	f.Add("a@b", "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", "\u202e", false)
	f.Fuzz(func(t *testing.T, email, password, device string, signUp bool) {
		c := Credentials{Email: email, Password: password, DeviceName: &device}
		gotEmail, gotDevice, err := c.validate(signUp)
		if err != nil {
			if ErrorCode(err) != CodeBadUserInput {
				t.Fatalf("validate returned %v, want BAD_USER_INPUT", err)
			}
			return
		}
		if len(gotEmail) > maxEmailLen || !strings.Contains(gotEmail, "@") || gotEmail != strings.TrimSpace(gotEmail) {
			t.Fatalf("accepted email %q", gotEmail)
		}
		n := utf8.RuneCountInString(password)
		if n > maxPasswordLen || signUp && n < minPasswordLen {
			t.Fatalf("accepted a password of %d characters (signUp=%v)", n, signUp)
		}
		if gotDevice != nil && (utf8.RuneCountInString(*gotDevice) > maxDeviceNameLen || *gotDevice == "" ||
			strings.ContainsRune(*gotDevice, 0)) {
			t.Fatalf("accepted device name %q", *gotDevice)
		}
	})
}
