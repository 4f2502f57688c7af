package api

import (
	"time"

	"github.com/example/sessionauth/auth"
)

// Config is what the transport is built with: the playground, the bounds
// of WebSocket connections, and the domain's configuration, whose
// AllowedOrigins (CORS) and TrustedProxies (the request log's client
// address) the transport applies too. The process reads it from the
// environment (config.go at the root).
type Config struct {
	// Playground serves GraphiQL at / and allows introspection (PLAYGROUND).
	Playground bool
	// WebSocket bounds subscription connections (WEBSOCKET_*).
	WebSocket WebSocketLimits
	Auth      auth.Config
}

// DefaultConfig is the configuration of an empty environment (API.md,
// "Configuration"): what config.go starts from, and what tests edit.
func DefaultConfig() Config {
	return Config{
		Playground: true,
		WebSocket: WebSocketLimits{
			InitTimeout:              10 * time.Second,
			PingInterval:             25 * time.Second,
			MaxSubscriptions:         20,
			MaxConnectionsPerSession: 10,
		},
		Auth: auth.DefaultConfig(),
	}
}
