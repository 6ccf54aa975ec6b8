package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"gatehouse/internal/gatetest"
)

// wsEchoBackend is a WebSocket server that echoes every message back.
func wsEchoBackend(t *testing.T) *httptest.Server {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(backend.Close)
	return backend
}

// wsRoundTrip sends msg and checks the echo.
func wsRoundTrip(ctx context.Context, t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "echo: "+msg {
		t.Errorf("got %q, want %q", got, "echo: "+msg)
	}
}

func TestWebSocketEcho(t *testing.T) {
	backend := wsEchoBackend(t)
	g := gatetest.Start(t, proxyConfig(backend.URL, ""))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://example.org/ws", &websocket.DialOptions{HTTPClient: g.ClientHTTP1()})
	if err != nil {
		t.Fatalf("dial through gatehouse: %v", err)
	}
	defer c.CloseNow()
	for i := range 3 {
		wsRoundTrip(ctx, t, c, fmt.Sprintf("message %d", i))
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestGRPC proxies grpc-go's health service (a unary Check and a
// server-streaming Watch) from a TLS client through gatehouse to an h2c
// backend, trailers included.
func TestGRPC(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(l)
	defer srv.Stop()

	g := gatetest.Start(t, proxyConfig("h2c://"+l.Addr().String(), ""))
	creds := credentials.NewTLS(&tls.Config{RootCAs: g.Roots, ServerName: "example.org"})
	conn, err := grpc.NewClient("passthrough:///"+g.HTTPS, grpc.WithTransportCredentials(creds), grpc.WithAuthority("example.org"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatalf("unary call: %v", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("unary: %v", resp.Status)
	}
	// An unknown service is a gRPC status carried in trailers.
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("unknown service: %v, want a NotFound status from the trailers", err)
	}

	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("stream first: %v %v", first, err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := stream.Recv()
	if err != nil || second.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("stream second: %v %v", second, err)
	}
}
