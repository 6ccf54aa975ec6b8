// Command gatehouse-pprof runs a gatehouse instance as `gatehouse run` does,
// with net/http/pprof on a separate loopback address, so the bench can take
// CPU and allocation profiles under load without adding anything to the
// gatehouse binary itself. Access logs are off, as in the bench config.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/instance"
)

func main() {
	cfgFile := flag.String("c", "", "config file")
	data := flag.String("data", "", "data folder")
	pprofAddr := flag.String("pprof", "127.0.0.1:6060", "pprof listen address (loopback)")
	flag.Parse()

	cfg, err := config.Load(*cfgFile)
	if err != nil {
		log.Fatalf("config %s: %v", *cfgFile, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	in, err := instance.New(cfg, instance.Options{DataDir: *data, Log: logger})
	if err != nil {
		log.Fatal(err)
	}
	if err := in.Start(); err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(http.ListenAndServe(*pprofAddr, nil)) }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in.Shutdown(sctx)
}
