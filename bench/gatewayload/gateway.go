package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

// The gateway process is this binary re-executed with these variables set.
const (
	roleEnv     = "EVENTBUS_GATEWAYLOAD_ROLE" // roleGateway
	roleGateway = "gateway"
	prefixEnv   = "EVENTBUS_GATEWAYLOAD_PREFIX"
	secretEnv   = "EVENTBUS_GATEWAYLOAD_SECRET"
	bufferEnv   = "EVENTBUS_GATEWAYLOAD_BUFFER"
	profileEnv  = "EVENTBUS_GATEWAYLOAD_CPUPROFILE"
	redisURLEnv = "REDIS_URL"
)

// statsPath is mounted on the gateway process's mux; GET it for a
// procStats (?gc=1 collects garbage first, so heap figures are live data).
const statsPath = "/loadstats"

// readyPrefix starts the line the gateway process writes on stdout once it
// serves: "listening <host:port>".
const readyPrefix = "listening "

// procStats is what the gateway process says about itself.
type procStats struct {
	Clients    int    `json:"clients"`
	RSS        int64  `json:"rss"`     // VmRSS, bytes
	PeakRSS    int64  `json:"peakRss"` // VmHWM, bytes
	HeapInuse  uint64 `json:"heapInuse"`
	HeapAlloc  uint64 `json:"heapAlloc"`
	Sys        uint64 `json:"sys"`
	Goroutines int    `json:"goroutines"`
	NumGC      uint32 `json:"numGC"`
	CPU        int64  `json:"cpuNs"` // user + system time of the process so far
}

// gatewayMain runs the gateway process: a gateway on a bus on REDIS_URL with
// the prefix it is given, served on a loopback port, until its stdin closes
// (the driver is done, or gone). It returns the exit code.
func gatewayMain() int {
	logger := watermill.NewSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "gatewayload gateway: "+format+"\n", a...)
		return 1
	}
	raiseFileLimit(1 << 16)
	buffer, _ := strconv.Atoi(os.Getenv(bufferEnv))
	b, err := bus.New(bus.Config{
		ServiceName:  "gatewayload",
		RedisURL:     os.Getenv(redisURLEnv),
		StreamPrefix: os.Getenv(prefixEnv),
	}, logger)
	if err != nil {
		return fail("bus.New: %v", err)
	}
	defer b.Close()
	g, err := gateway.New(b, gateway.Config{
		Auth:         gateway.AuthConfig{HMACSecret: []byte(os.Getenv(secretEnv))},
		IngressJWT:   true,
		ClientBuffer: buffer,
	}, logger)
	if err != nil {
		return fail("gateway.New: %v", err)
	}
	g.Mount("GET "+statsPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(readProcStats(g.Clients()))
	}))

	if path := os.Getenv(profileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fail("cpu profile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail("cpu profile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the driver closes our stdin when it is done
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(ctx, ln) }()
	select {
	case <-g.Running():
	case err := <-serveErr:
		return fail("serve: %v", err)
	case <-time.After(30 * time.Second):
		return fail("the push-stream reader did not start within 30s")
	}
	fmt.Printf("%s%s\n", readyPrefix, ln.Addr())
	if err := <-serveErr; err != nil {
		return fail("serve: %v", err)
	}
	return 0
}

func readProcStats(clients int) procStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	s := procStats{
		Clients:    clients,
		HeapInuse:  m.HeapInuse,
		HeapAlloc:  m.HeapAlloc,
		Sys:        m.Sys,
		Goroutines: runtime.NumGoroutine(),
		NumGC:      m.NumGC,
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.CPU = ru.Utime.Nano() + ru.Stime.Nano()
	}
	s.RSS, s.PeakRSS = procRSS()
	return s
}

// procRSS returns VmRSS and VmHWM from /proc/self/status, in bytes (0 when
// it cannot be read: not Linux).
func procRSS() (rss, peak int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak
}

// raiseFileLimit raises the soft limit on open files to n (or the hard
// limit, if lower): each stream is a socket on both sides.
func raiseFileLimit(n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < n {
		lim.Cur = min(lim.Max, n)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}
