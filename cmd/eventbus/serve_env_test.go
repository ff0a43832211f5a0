package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shared-infra/eventbus/internal/redistest"
)

// served is a running `eventbus serve`.
type served struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port

	mu  sync.Mutex
	log strings.Builder // stderr so far
}

func (s *served) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop sends SIGINT and checks the exit code is 0.
func (s *served) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Errorf("serve after SIGINT: %v, want exit 0; stderr:\n%s", err, s.stderr())
	}
}

var listenRe = regexp.MustCompile(`listening on (http://[0-9.]+:[0-9]+)`)

// startServe starts the binary with args and env (beyond the test's own
// environment) and waits until it says where it listens.
func startServe(t *testing.T, ctx context.Context, env []string, args ...string) *served {
	t.Helper()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = childEnv(env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &served{cmd: cmd}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		close(found)
	}()
	select {
	case base, ok := <-found:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("serve exited before listening; stderr:\n%s", s.stderr())
		}
		s.base = base
	case <-ctx.Done():
		t.Fatalf("serve did not say where it listens; stderr:\n%s", s.stderr())
	}
	return s
}

// waitReady polls /readyz until it answers 200: the push-stream reader
// starts just after the listener.
func waitReady(t *testing.T, base string) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for {
		code, body := getStatus(t, base+"/readyz")
		if code == http.StatusOK {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("/readyz still %d after 20s: %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := checkedClient(t).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeEnvOnly configures serve through EVENTBUS_* variables alone
// (no flag at all): it listens where EVENTBUS_LISTEN says, on the prefix of
// EVENTBUS_PREFIX, logs JSON, and its probes answer.
func TestServeEnvOnly(t *testing.T) {
	t.Parallel()
	c, prefix, _ := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const apiKey = "env-key-0123456789abcdef"
	s := startServe(t, ctx, []string{
		"REDIS_URL=", "EVENTBUS_REDIS_URL=" + redistest.URL(),
		"EVENTBUS_PREFIX=" + prefix, "EVENTBUS_SERVICE=env-gateway",
		"EVENTBUS_LISTEN=127.0.0.1:0", "EVENTBUS_LOG_FORMAT=json", "EVENTBUS_LOG_LEVEL=debug",
		"EVENTBUS_ALLOW_ORIGIN=https://a.example,https://b.example",
		"EVENTBUS_RATE=-1",
		"EVENTBUS_JWT_SECRET=0123456789abcdef0123456789abcdef-secret", "EVENTBUS_API_KEYS=" + apiKey,
	}, "serve")
	waitReady(t, s.base)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := getStatus(t, s.base+path); code != http.StatusOK {
			t.Errorf("GET %s: %d %s, want 200", path, code, body)
		}
	}
	// CORS from the comma-separated EVENTBUS_ALLOW_ORIGIN: both origins.
	for _, origin := range []string{"https://a.example", "https://b.example"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, s.base+"/v1/events", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := checkedClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("preflight from %s: Access-Control-Allow-Origin %q", origin, got)
		}
	}
	// Ingress publishes on EVENTBUS_PREFIX's streams.
	body := `{"specversion":"1.0","id":"e-env","source":"curl","type":"photo.uploaded","data":{}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := checkedClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/events: %d, want 202", resp.StatusCode)
	}
	if n := c.XLen(ctx, prefix+"photo.uploaded").Val(); n != 1 {
		t.Errorf("%sphoto.uploaded has %d entries, want 1", prefix, n)
	}
	s.stop(t)
	// Every stderr line is a JSON log record.
	lines := lines(s.stderr())
	if len(lines) == 0 {
		t.Fatal("no log lines")
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["msg"] == nil || rec["level"] == nil {
			t.Errorf("stderr line is not a JSON log record: %q", l)
		}
	}
}

// TestServeFlagWinsOverEnv: a flag given on the command line wins over its
// variable (here an EVENTBUS_LISTEN that could not be listened on).
func TestServeFlagWinsOverEnv(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s := startServe(t, ctx, []string{
		"REDIS_URL=" + redistest.URL(), "EVENTBUS_LISTEN=256.0.0.1:1", "EVENTBUS_LOG_FORMAT=text",
		"EVENTBUS_JWT_SECRET=0123456789abcdef0123456789abcdef-secret", "EVENTBUS_API_KEYS=flag-key-0123456789abcdef",
	}, with(global, "serve", "--listen", "127.0.0.1:0")...)
	if code, body := getStatus(t, s.base+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz: %d %s", code, body)
	}
	s.stop(t)
	if strings.HasPrefix(s.stderr(), "{") {
		t.Errorf("EVENTBUS_LOG_FORMAT=text gave JSON:\n%s", s.stderr())
	}
}

// TestServeBadEnv: a value that its flag refuses stops serve with exit 2
// and an error naming the variable and the flag.
func TestServeBadEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  string
		want []string
	}{
		{"EVENTBUS_RATE=fast", []string{"EVENTBUS_RATE", `"fast"`, "--rate"}},
		{"EVENTBUS_HEALTH=perhaps", []string{"EVENTBUS_HEALTH", "--health"}},
		{"EVENTBUS_LOG_FORMAT=xml", []string{"--log-format", `"xml"`, "text or json"}},
		{"EVENTBUS_API_KEYS=short", []string{"APIKeys[0] is 5 bytes", "16"}},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), binary, "serve", "--listen", "127.0.0.1:0")
			cmd.Env = childEnv("REDIS_URL="+redistest.URL(), "EVENTBUS_JWT_SECRET=0123456789abcdef0123456789abcdef-secret", "EVENTBUS_API_KEYS=bad-env-0123456789abcdef", tc.env)
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			r := result{stdout: out.String(), stderr: errb.String()}
			if ee, ok := err.(*exec.ExitError); ok {
				r.code = ee.ExitCode()
			}
			r.failsWith(t, 2, tc.want...)
		})
	}
}
