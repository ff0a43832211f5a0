// Command gatewayload is the gateway's SSE load run (make bench-gateway): a
// measurement, not a test.
//
// It runs the gateway in a process of its own (this binary, re-executed with
// EVENTBUS_GATEWAYLOAD_ROLE=gateway) so that the gateway's memory and CPU are
// measured alone, and drives it from this process: N SSE clients on
// loopback, and a publisher that offers a rate of events of mixed
// addressing (broadcast, to a user, to a room) through the bus for a while.
// It then reports the deliveries expected and received, the streams the
// gateway cut, the delivery latency (receive time − publish time, both taken
// in this process), and the gateway process's RSS, Go heap and CPU time,
// which it reads from an endpoint the gateway process mounts.
//
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./bench/gatewayload
//	go run ./bench/gatewayload -clients 1000 -rate 1000 -duration 10s -cpuprofile gateway.cpu
//
// Every key it writes is under a prefix of its own (gwload:<random>:), which
// it deletes when done.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/rediskeys"
)

func main() {
	if os.Getenv(roleEnv) == roleGateway {
		os.Exit(gatewayMain())
	}
	cfg := defaultConfig()
	flag.IntVar(&cfg.Clients, "clients", cfg.Clients, "SSE clients")
	flag.IntVar(&cfg.Users, "users", cfg.Users, "distinct users (client i is user u<i%users>)")
	flag.IntVar(&cfg.Rooms, "rooms", cfg.Rooms, "distinct rooms (client i joins room r<i%rooms>)")
	flag.IntVar(&cfg.Rate, "rate", cfg.Rate, "events published per second (one third each broadcast, user, room)")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to publish")
	flag.DurationVar(&cfg.Drain, "drain", cfg.Drain, "longest wait for the last deliveries after publishing")
	flag.IntVar(&cfg.ClientBuffer, "buffer", cfg.ClientBuffer, "the gateway's Config.ClientBuffer (0: its default)")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the gateway process (connect to drain) to this file")
	flag.Parse()

	cfg.RedisURL = os.Getenv("REDIS_URL")
	if strings.TrimSpace(cfg.RedisURL) == "" {
		cfg.RedisURL = "redis://127.0.0.1:6379/0"
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	cfg.Prefix = "gwload:" + hex.EncodeToString(r[:]) + ":"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg, os.Stderr)
	if cerr := deletePrefix(cfg.RedisURL, cfg.Prefix); cerr != nil {
		fmt.Fprintf(os.Stderr, "gatewayload: deleting keys %s*: %v\n", cfg.Prefix, cerr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gatewayload: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(res.Markdown())
}

// deletePrefix deletes every key under prefix (see rediskeys.DeletePrefix).
func deletePrefix(url, prefix string) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rediskeys.DeletePrefix(ctx, c, prefix)
}
