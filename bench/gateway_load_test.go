package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/golang-jwt/jwt/v5"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// The gateway load run: a measurement, not a correctness test. It runs only
// when EVENTBUS_GATEWAY_LOAD=1; otherwise TestGatewayLoad logs that it is a
// load run and returns.
const (
	gatewayLoadEnv = "EVENTBUS_GATEWAY_LOAD"
	loadClients    = 1000
	loadUsers      = 100
	loadRooms      = 10
	loadRate       = 1000 // events per second
	loadTick       = 10 * time.Millisecond
	loadDuration   = 10 * time.Second
	loadDrain      = 90 * time.Second // most time to wait for the last deliveries
)

var loadSecret = []byte("0123456789abcdef0123456789abcdef-load-secret")

// loadData is the data of every load event: the publish time and the
// addressing kind (b broadcast, u user, r room).
type loadData struct {
	Sent int64  `json:"sent"`
	K    string `json:"k"`
}

// loadClient is one SSE stream: the delivery latencies (ns) it saw.
type loadClient struct {
	lat      []int64
	lastRecv int64     // UnixNano of the last delivery
	kinds    [3]int    // deliveries of b, u, r
	broken   error     // the stream ended before the run did
	brokenAt time.Time // when
}

var (
	sentKey = []byte(`"sent":`)
	kindKey = []byte(`"k":"`)
)

// read parses the event stream: for each data line carrying loadData it
// records receive time − publish time. It avoids decoding the JSON so that
// the client side takes as little of the shared CPU as it can.
func (c *loadClient) read(resp *http.Response, stopping *atomic.Bool, total *atomic.Int64) {
	r := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if !stopping.Load() {
				c.broken, c.brokenAt = err, time.Now()
			}
			return
		}
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		now := time.Now().UnixNano()
		i := bytes.Index(line, sentKey)
		if i < 0 {
			continue
		}
		rest := line[i+len(sentKey):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		sent, perr := strconv.ParseInt(string(rest[:j]), 10, 64)
		if perr != nil {
			continue
		}
		c.lat = append(c.lat, now-sent)
		c.lastRecv = now
		total.Add(1)
		if k := bytes.Index(line, kindKey); k >= 0 && k+len(kindKey) < len(line) {
			switch line[k+len(kindKey)] {
			case 'b':
				c.kinds[0]++
			case 'u':
				c.kinds[1]++
			case 'r':
				c.kinds[2]++
			}
		}
	}
}

func heapNow() (inuse, sys uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.Sys
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// TestGatewayLoad is the gateway load run (a measurement, skipped unless
// EVENTBUS_GATEWAY_LOAD=1): 1,000 SSE clients on loopback, 1,000 events/s
// for 10 s of mixed addressing, delivery latency and memory.
func TestGatewayLoad(t *testing.T) {
	if os.Getenv(gatewayLoadEnv) != "1" {
		t.Logf("gateway load run (a measurement, not a correctness test): set %s=1 to run it", gatewayLoadEnv)
		return
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 4*loadClients+1000 {
		lim.Cur = min(lim.Max, 4*loadClients+1000)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("raise the open-file limit: %v", err)
		}
	}

	// The gateway, on a bus on the test Redis with its own prefix.
	b := newBus(t, redistest.Client(t), redistest.Prefix(t))
	g, err := gateway.New(b, gateway.Config{
		Auth:       gateway.AuthConfig{HMACSecret: loadSecret},
		IngressJWT: true,
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = g.Close() }) // before srv.Close: streams end first
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil && err != gateway.ErrGatewayClosed {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return")
		}
	})
	select {
	case <-g.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start running")
	}

	baseInuse, baseSys := heapNow()

	// 1,000 clients: user u<i%100>, room r<i%10>.
	httpClient := &http.Client{Transport: &http.Transport{
		MaxConnsPerHost:     0,
		MaxIdleConns:        2 * loadClients,
		MaxIdleConnsPerHost: 2 * loadClients,
		DisableCompression:  true,
	}}
	clients := make([]*loadClient, loadClients)
	var stopping atomic.Bool
	var deliveredTotal atomic.Int64
	var readers sync.WaitGroup
	var bodies sync.Map // index → *http.Response
	reqCtx, reqCancel := context.WithCancel(context.Background())
	defer reqCancel()
	exp := time.Now().Add(time.Hour).Unix()
	connectStart := time.Now()
	sem := make(chan struct{}, 100)
	var dialErrs sync.Map
	var dialing sync.WaitGroup
	for i := range loadClients {
		user, room := fmt.Sprintf("u%d", i%loadUsers), fmt.Sprintf("r%d", i%loadRooms)
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": user, "rooms": []string{room}, "exp": exp,
		}).SignedString(loadSecret)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		q := url.Values{}
		q.Set(gateway.AccessTokenParam, tok)
		q.Set(gateway.RoomsParam, room)
		u := srv.URL + gateway.StreamPath + "?" + q.Encode()
		clients[i] = &loadClient{}
		sem <- struct{}{}
		dialing.Go(func() {
			defer func() { <-sem }()
			req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u, nil)
			if err != nil {
				dialErrs.Store(i, err)
				return
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				dialErrs.Store(i, err)
				return
			}
			if resp.StatusCode != http.StatusOK {
				_ = resp.Body.Close()
				dialErrs.Store(i, fmt.Errorf("status %d", resp.StatusCode))
				return
			}
			bodies.Store(i, resp)
			readers.Go(func() { clients[i].read(resp, &stopping, &deliveredTotal) })
		})
	}
	dialing.Wait()
	dialErrs.Range(func(k, v any) bool {
		t.Fatalf("client %v: %v", k, v)
		return false
	})
	end := time.Now().Add(60 * time.Second)
	for g.Clients() != loadClients {
		if time.Now().After(end) {
			t.Fatalf("gateway reports %d clients after 60 s, want %d", g.Clients(), loadClients)
		}
		time.Sleep(10 * time.Millisecond)
	}
	connectTime := time.Since(connectStart)
	idleInuse, idleSys := heapNow()

	// Publish: batches of 10 every 10 ms for 10 s, kinds b, u, r in turn.
	pub := b.Publisher()
	var published [3]int
	var pubErrs int
	perTick := loadRate * int(loadTick) / int(time.Second)
	maxBatch := 0
	ticker := time.NewTicker(loadTick)
	pubStart := time.Now()
	n := 0
	total := loadRate * int(loadDuration/time.Second)
	for n < total {
		<-ticker.C
		// One batch: perTick events in one Publish call (one round trip).
		// A publisher that fell behind (the ticker drops ticks) catches up
		// with a larger batch, so the offered load stays loadRate.
		due := min(total, int(time.Since(pubStart)*loadRate/time.Second)+perTick)
		batch := max(0, due-n)
		msgs := make([]*message.Message, 0, batch)
		kinds := make([]int, 0, batch)
		for range batch {
			kind := n % 3
			var opt bus.Option
			var k string
			switch kind {
			case 0:
				opt, k = bus.WithBroadcast(), "b"
			case 1:
				opt, k = bus.WithUser(fmt.Sprintf("u%d", (n/3)%loadUsers)), "u"
			case 2:
				opt, k = bus.WithRoom(fmt.Sprintf("r%d", (n/3)%loadRooms)), "r"
			}
			n++
			msg, err := bus.NewMessage(context.Background(), loadData{Sent: time.Now().UnixNano(), K: k}, opt)
			if err != nil {
				t.Fatalf("NewMessage: %v", err)
			}
			msgs = append(msgs, msg)
			kinds = append(kinds, kind)
		}
		if len(msgs) == 0 {
			continue
		}
		maxBatch = max(maxBatch, len(msgs))
		if err := pub.Publish("load.event", msgs...); err != nil {
			pubErrs += len(msgs)
			continue
		}
		for _, kind := range kinds {
			published[kind]++
		}
	}
	ticker.Stop()
	pubTime := time.Since(pubStart)
	perKind := [3]int{loadClients, loadClients / loadUsers, loadClients / loadRooms}
	expected := published[0]*perKind[0] + published[1]*perKind[1] + published[2]*perKind[2]

	// Wait for the tail: until every expected delivery arrived, or no
	// delivery for 2 s, or loadDrain.
	drainEnd := time.Now().Add(loadDrain)
	last, lastChange := deliveredTotal.Load(), time.Now()
	for deliveredTotal.Load() < int64(expected) && time.Now().Before(drainEnd) && time.Since(lastChange) < 2*time.Second {
		time.Sleep(50 * time.Millisecond)
		if d := deliveredTotal.Load(); d != last {
			last, lastChange = d, time.Now()
		}
	}
	loadInuse, loadSys := heapNow()
	stillConnected := g.Clients()

	stopping.Store(true)
	reqCancel()
	bodies.Range(func(_, v any) bool { _ = v.(*http.Response).Body.Close(); return true })
	readers.Wait()

	var all []int64
	var kinds [3]int
	broken := 0
	var drops []time.Duration
	var lastRecv int64
	for _, c := range clients {
		all = append(all, c.lat...)
		for k := range kinds {
			kinds[k] += c.kinds[k]
		}
		lastRecv = max(lastRecv, c.lastRecv)
		if c.broken != nil {
			broken++
			drops = append(drops, c.brokenAt.Sub(pubStart))
		}
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return time.Duration(all[min(len(all)-1, int(p*float64(len(all))))])
	}
	var maxLat time.Duration
	if len(all) > 0 {
		maxLat = time.Duration(all[len(all)-1])
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

	var tb bytes.Buffer
	fmt.Fprintf(&tb, "\n| measure | value |\n|---|---|\n")
	fmt.Fprintf(&tb, "| clients (SSE on loopback) | %d (%d users, %d rooms), connected in %s |\n", loadClients, loadUsers, loadRooms, connectTime.Round(time.Millisecond))
	fmt.Fprintf(&tb, "| events published | %d in %s (%.0f/s): %d broadcast, %d user, %d room; %d publish errors; largest batch %d |\n",
		published[0]+published[1]+published[2], pubTime.Round(time.Millisecond),
		float64(published[0]+published[1]+published[2])/pubTime.Seconds(), published[0], published[1], published[2], pubErrs, maxBatch)
	fmt.Fprintf(&tb, "| deliveries | %d of %d expected (%.2f %%) |\n", len(all), expected, 100*float64(len(all))/float64(max(expected, 1)))
	fmt.Fprintf(&tb, "| deliveries by kind | broadcast %d/%d, user %d/%d, room %d/%d |\n",
		kinds[0], published[0]*perKind[0], kinds[1], published[1]*perKind[1], kinds[2], published[2]*perKind[2])
	span := time.Duration(lastRecv - pubStart.UnixNano())
	fmt.Fprintf(&tb, "| delivery rate | %.0f/s (first publish to last delivery: %s) |\n", float64(len(all))/span.Seconds(), span.Round(time.Millisecond))
	fmt.Fprintf(&tb, "| latency p50 | %s |\n| latency p99 | %s |\n| latency max | %s |\n", ms(pct(0.50)), ms(pct(0.99)), ms(maxLat))
	fmt.Fprintf(&tb, "| streams ended early (dropped) | %d (gateway still reports %d clients) |\n", broken, stillConnected)
	fmt.Fprintf(&tb, "| HeapInuse: baseline → 1,000 idle clients | %s → %s (+%s, %s per client) |\n",
		mib(int64(baseInuse)), mib(int64(idleInuse)), mib(int64(idleInuse)-int64(baseInuse)),
		fmt.Sprintf("%.1f KiB", float64(int64(idleInuse)-int64(baseInuse))/loadClients/1024))
	fmt.Fprintf(&tb, "| Sys: baseline → 1,000 idle clients | %s → %s (+%s) |\n", mib(int64(baseSys)), mib(int64(idleSys)), mib(int64(idleSys)-int64(baseSys)))
	fmt.Fprintf(&tb, "| HeapInuse / Sys after the run (incl. %d recorded latencies) | +%s / +%s over baseline |\n",
		len(all), mib(int64(loadInuse)-int64(baseInuse)), mib(int64(loadSys)-int64(baseSys)))
	if len(drops) > 0 {
		slices.Sort(drops)
		fmt.Fprintf(&tb, "| when streams ended (after publishing began) | first %s, median %s, last %s |\n",
			drops[0].Round(time.Millisecond), drops[len(drops)/2].Round(time.Millisecond), drops[len(drops)-1].Round(time.Millisecond))
	}
	t.Log(tb.String())
	if broken > 0 || len(all) < expected {
		t.Logf("note: %d deliveries missing, %d streams dropped", expected-len(all), broken)
	}
}
