package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/golang-jwt/jwt/v5"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

// Config is one load run.
type Config struct {
	RedisURL string
	// Prefix is the bus's StreamPrefix for the run; the caller deletes the
	// keys under it afterwards.
	Prefix string
	// Clients is the number of SSE streams; client i is user u<i%Users> and
	// joins room r<i%Rooms>.
	Clients, Users, Rooms int
	// Rate is the events published per second, for Duration, one third each
	// broadcast, to a user and to a room (in turn).
	Rate     int
	Duration time.Duration
	// Drain bounds the wait for the last deliveries after publishing; the
	// wait also ends when every expected delivery arrived, or when none
	// arrived for 2 s.
	Drain time.Duration
	// ClientBuffer is the gateway's Config.ClientBuffer (0: its default).
	ClientBuffer int
	// CPUProfile, when set, is where the gateway process writes a CPU
	// profile of its whole life.
	CPUProfile string
	// Gateway is the command that starts the gateway process; empty means
	// this executable (os.Executable). Run adds the role and settings to
	// its environment.
	Gateway []string
}

func defaultConfig() Config {
	return Config{
		Clients:  1000,
		Users:    100,
		Rooms:    10,
		Rate:     1000,
		Duration: 10 * time.Second,
		Drain:    60 * time.Second,
	}
}

// publishTick is how often the publisher sends a batch (Rate/100 events at
// 10 ms), in one Publish call.
const publishTick = 10 * time.Millisecond

// Run starts the gateway process, connects the clients, publishes, waits for
// the deliveries and returns what it measured. Progress goes to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (*Result, error) {
	if cfg.Clients < 1 || cfg.Users < 1 || cfg.Rooms < 1 || cfg.Rate < 1 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("clients, users, rooms, rate and duration must be positive: %+v", cfg)
	}
	raiseFileLimit(uint64(2*cfg.Clients + 1000))
	var r [16]byte
	_, _ = rand.Read(r[:])
	secret := []byte(hex.EncodeToString(r[:]))

	gw, err := startGateway(cfg, secret, log)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	res := &Result{Config: cfg}
	if res.Baseline, err = gw.stats(ctx, true); err != nil {
		return nil, err
	}

	// The clients.
	httpClient := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: cfg.Clients,
		DisableCompression:  true,
	}}
	defer httpClient.CloseIdleConnections()
	reqCtx, reqCancel := context.WithCancel(ctx)
	defer reqCancel()
	clients := make([]*sseClient, cfg.Clients)
	var (
		stopping  atomic.Bool
		delivered atomic.Int64
		readers   sync.WaitGroup
		bodies    sync.Map // index → io.Closer
	)
	defer func() {
		stopping.Store(true)
		reqCancel()
		bodies.Range(func(_, v any) bool { _ = v.(io.Closer).Close(); return true })
		readers.Wait()
	}()
	exp := time.Now().Add(time.Hour).Unix()
	connectStart := time.Now()
	var (
		dialing  sync.WaitGroup
		dialMu   sync.Mutex
		dialErrs []error
	)
	sem := make(chan struct{}, 50)
	for i := range cfg.Clients {
		user, room := fmt.Sprintf("u%d", i%cfg.Users), fmt.Sprintf("r%d", i%cfg.Rooms)
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": user, "rooms": []string{room}, "exp": exp,
		}).SignedString(secret)
		if err != nil {
			return nil, fmt.Errorf("sign a token: %w", err)
		}
		q := url.Values{}
		q.Set(gateway.AccessTokenParam, tok)
		q.Set(gateway.RoomsParam, room)
		u := gw.url + gateway.StreamPath + "?" + q.Encode()
		clients[i] = &sseClient{}
		sem <- struct{}{}
		dialing.Go(func() {
			defer func() { <-sem }()
			err := func() error {
				req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u, nil)
				if err != nil {
					return err
				}
				resp, err := httpClient.Do(req)
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					_ = resp.Body.Close()
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				bodies.Store(i, resp.Body)
				readers.Go(func() { clients[i].read(resp, &stopping, &delivered) })
				return nil
			}()
			if err != nil {
				dialMu.Lock()
				dialErrs = append(dialErrs, fmt.Errorf("client %d: %w", i, err))
				dialMu.Unlock()
			}
		})
	}
	dialing.Wait()
	if len(dialErrs) > 0 {
		return nil, fmt.Errorf("%d of %d clients could not connect: %w", len(dialErrs), cfg.Clients, errors.Join(dialErrs[:min(3, len(dialErrs))]...))
	}
	for {
		s, err := gw.stats(ctx, false)
		if err != nil {
			return nil, err
		}
		if s.Clients == cfg.Clients {
			break
		}
		if time.Since(connectStart) > time.Minute {
			return nil, fmt.Errorf("the gateway reports %d streams a minute after connecting, want %d", s.Clients, cfg.Clients)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	res.ConnectTime = time.Since(connectStart)
	if res.Idle, err = gw.stats(ctx, true); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "gatewayload: %d clients connected in %s; publishing %d events/s for %s\n",
		cfg.Clients, res.ConnectTime.Round(time.Millisecond), cfg.Rate, cfg.Duration)

	// The publisher.
	b, err := bus.New(bus.Config{ServiceName: "gatewayload", RedisURL: cfg.RedisURL, StreamPrefix: cfg.Prefix}, watermill.NopLogger{})
	if err != nil {
		return nil, fmt.Errorf("bus.New: %w", err)
	}
	defer b.Close()
	pub := b.Publisher()
	var driverCPU0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &driverCPU0)
	before, err := gw.stats(ctx, false)
	if err != nil {
		return nil, err
	}
	ticker := time.NewTicker(publishTick)
	pubStart := time.Now()
	total := int(int64(cfg.Rate) * int64(cfg.Duration) / int64(time.Second))
	n := 0
	for n < total {
		select {
		case <-ticker.C:
		case <-ctx.Done():
			ticker.Stop()
			return nil, ctx.Err()
		}
		// A publisher that fell behind (the ticker drops ticks) catches up
		// with a larger batch, so the offered rate stays Rate.
		due := min(total, int(int64(time.Since(pubStart)+publishTick)*int64(cfg.Rate)/int64(time.Second)))
		if due <= n {
			continue
		}
		msgs := make([]*message.Message, 0, due-n)
		kinds := make([]int, 0, due-n)
		for ; n < due; n++ {
			kind := n % numKinds
			var opt bus.Option
			var k string
			switch kind {
			case kindBroadcast:
				opt, k = bus.WithBroadcast(), "b"
			case kindUser:
				opt, k = bus.WithUser(fmt.Sprintf("u%d", (n/numKinds)%cfg.Users)), "u"
			case kindRoom:
				opt, k = bus.WithRoom(fmt.Sprintf("r%d", (n/numKinds)%cfg.Rooms)), "r"
			}
			msg, err := bus.NewMessage(ctx, loadData{Sent: time.Now().UnixNano(), K: k}, opt)
			if err != nil {
				return nil, fmt.Errorf("bus.NewMessage: %w", err)
			}
			msgs = append(msgs, msg)
			kinds = append(kinds, kind)
		}
		res.MaxBatch = max(res.MaxBatch, len(msgs))
		if err := pub.Publish("load.event", msgs...); err != nil {
			res.PublishErrors += len(msgs)
			continue
		}
		for i, kind := range kinds {
			res.Published[kind]++
			res.Expected[kind] += res.recipients(kind, n-len(kinds)+i)
		}
	}
	ticker.Stop()
	res.PublishTime = time.Since(pubStart)
	expected := res.Expected[0] + res.Expected[1] + res.Expected[2]

	// The tail: until every expected delivery arrived, none arrived for 2 s,
	// or Drain.
	drainEnd := time.Now().Add(cfg.Drain)
	last, lastChange := delivered.Load(), time.Now()
	for delivered.Load() < int64(expected) && time.Now().Before(drainEnd) && time.Since(lastChange) < 2*time.Second {
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
		if d := delivered.Load(); d != last {
			last, lastChange = d, time.Now()
		}
	}
	if res.After, err = gw.stats(ctx, false); err != nil {
		return nil, err
	}
	res.Window = time.Since(pubStart)
	var driverCPU1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &driverCPU1)
	res.GatewayCPU = time.Duration(res.After.CPU - before.CPU)
	res.DriverCPU = time.Duration(driverCPU1.Utime.Nano() + driverCPU1.Stime.Nano() - driverCPU0.Utime.Nano() - driverCPU0.Stime.Nano())
	if res.AfterGC, err = gw.stats(ctx, true); err != nil {
		return nil, err
	}

	stopping.Store(true)
	reqCancel()
	bodies.Range(func(_, v any) bool { _ = v.(io.Closer).Close(); return true })
	readers.Wait()
	res.collect(clients, pubStart)
	if err := gw.stop(); err != nil {
		return nil, err
	}
	return res, nil
}

// recipients is how many clients event number n of the given kind reaches.
func (r *Result) recipients(kind, n int) int {
	c := r.Config
	var match func(i int) bool
	switch kind {
	case kindBroadcast:
		return c.Clients
	case kindUser:
		u := (n / numKinds) % c.Users
		match = func(i int) bool { return i%c.Users == u }
	default:
		room := (n / numKinds) % c.Rooms
		match = func(i int) bool { return i%c.Rooms == room }
	}
	k := 0
	for i := range c.Clients {
		if match(i) {
			k++
		}
	}
	return k
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatewayProc is the running gateway process.
type gatewayProc struct {
	cmd      *exec.Cmd
	stdin    io.Closer
	url      string
	http     *http.Client
	stopOnce sync.Once
	stopErr  error
}

func startGateway(cfg Config, secret []byte, log io.Writer) (*gatewayProc, error) {
	argv := cfg.Gateway
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this executable to start the gateway process: %w", err)
		}
		argv = []string{exe}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		roleEnv+"="+roleGateway,
		redisURLEnv+"="+cfg.RedisURL,
		prefixEnv+"="+cfg.Prefix,
		secretEnv+"="+string(secret),
		bufferEnv+"="+strconv.Itoa(cfg.ClientBuffer),
		profileEnv+"="+cfg.CPUProfile,
	)
	cmd.Stderr = log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the gateway process: %w", err)
	}
	p := &gatewayProc{cmd: cmd, stdin: stdin, http: &http.Client{Timeout: 30 * time.Second}}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				addr <- a
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			err := p.stop()
			return nil, fmt.Errorf("the gateway process ended before serving: %v", err)
		}
		p.url = "http://" + a
	case <-time.After(time.Minute):
		_ = p.stop()
		return nil, errors.New("the gateway process did not start serving within a minute")
	}
	return p, nil
}

// stats asks the gateway process about itself; gc collects garbage first.
func (p *gatewayProc) stats(ctx context.Context, gc bool) (procStats, error) {
	u := p.url + statsPath
	if gc {
		u += "?gc=1"
	}
	var s procStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return s, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return s, fmt.Errorf("gateway stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("gateway stats: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("gateway stats: %w", err)
	}
	return s, nil
}

// stop closes the process's stdin (it shuts down) and waits for it; after
// 30 s it kills it. It returns an error if the process did not exit 0.
func (p *gatewayProc) stop() error {
	p.stopOnce.Do(func() {
		p.http.CloseIdleConnections()
		_ = p.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				p.stopErr = fmt.Errorf("gateway process: %w", err)
			}
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
			p.stopErr = errors.New("gateway process: did not stop within 30s of its stdin closing; killed")
		}
	})
	return p.stopErr
}
