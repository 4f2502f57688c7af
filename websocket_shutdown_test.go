package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	coderws "github.com/coder/websocket"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// TestWebSocketShutdownAndObservability runs the real program: a connection
// outlives the 10 s request deadline's reach (it is not a request), is logged
// when it opens and closes, counted in the metrics, and closed with 1001 by a
// graceful stop, which then completes.
func TestWebSocketShutdownAndObservability(t *testing.T) {
	url := pgtest.NewURL(t)
	srv := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url, "METRICS_ADDR": "127.0.0.1:0"})
	p := srv.SignUp(t, "shut@example.com")
	c := srv.DialWS(t, nil)
	c.MustInit(testkit.AuthInit(p.AccessToken))
	c.Subscribe("1", testkit.SecurityEventsSubscription)
	anon := srv.DialWS(t, nil)
	anon.MustInit(nil)

	metrics := func() string {
		resp, err := http.Get(srv.Metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if m := metrics(); !strings.Contains(m, "sessionauth_websocket_connections 2") {
		t.Fatalf("gauge of open connections missing or wrong:\n%s", grepLines(m, "websocket"))
	}
	// A third, closed by its client, is counted by reason.
	third := srv.DialWS(t, nil)
	third.MustInit(testkit.AuthInit(p.AccessToken))
	third.Conn.Close(coderws.StatusNormalClosure, "")
	testkit.Eventually(t, "the client's close counted", func() bool {
		m := metrics()
		return strings.Contains(m, `sessionauth_websocket_closes_total{reason="client_closed"} 1`) &&
			strings.Contains(m, "sessionauth_websocket_connections 2")
	})
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()
	c.WantClose(1001, "GOING_AWAY", 5*time.Second)
	anon.WantClose(1001, "GOING_AWAY", 5*time.Second)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("graceful stop did not finish")
	}
	var opened, closed int
	for _, line := range srv.Logs.Lines(t) {
		switch line["msg"] {
		case "websocket opened":
			opened++
		case "websocket closed":
			closed++
			if line["reason"] == "client_closed" {
				continue
			}
			if line["reason"] != "GOING_AWAY" || line["code"] != float64(1001) || line["duration_ms"] == nil {
				t.Errorf("close line %v, want GOING_AWAY 1001 with a duration", line)
			}
			if line["session_id"] != nil && line["session_id"] != p.Session.ID {
				t.Errorf("close line names session %v, want %s", line["session_id"], p.Session.ID)
			}
		}
	}
	if opened != 3 || closed != 3 {
		t.Fatalf("%d opened and %d closed lines, want 3 each:\n%s", opened, closed, srv.Logs)
	}
	if strings.Contains(srv.Logs.String(), p.AccessToken) {
		t.Fatal("the access token reached the log")
	}
}

func grepLines(s, word string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, word) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
