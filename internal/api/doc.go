// Package api serves the GraphQL API over HTTP and WebSocket: New builds
// the handler that the program serves on ADDR, with gqlgen's transports
// chosen one by one (POST, GET for queries, graphql-transport-ws), the error
// presenter that gives every error its code, CORS, body and query limits,
// no-store, the request log, the metrics (served apart, Server.Metrics),
// /healthz, /readyz and the playground's mount.
//
// It holds no rule of the domain: what an operation does is package auth's,
// reached through package resolvers.
package api
