package main_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shared-infra/eventbus/internal/redistest"
)

const tokenSecret = "0123456789abcdef0123456789abcdef-token-test"

// tokenCLI runs the binary with EVENTBUS_JWT_SECRET set.
func tokenCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return cliEnvIn(t, stdin, []string{"EVENTBUS_JWT_SECRET=" + tokenSecret, "REDIS_URL=" + redistest.URL()}, args...)
}

// TestTokenOpensStream: a token minted by `eventbus token` opens a stream
// on `eventbus serve` (same secret), gets the events of its room, and the
// stream ends at the token's exp with a token-expired event.
func TestTokenOpensStream(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const apiKey = "token-key-0123456789abcdef"
	s := startServe(t, ctx, []string{"REDIS_URL=" + redistest.URL(), "EVENTBUS_JWT_SECRET=" + tokenSecret, "EVENTBUS_API_KEYS=" + apiKey},
		with(global, "serve", "--listen", "127.0.0.1:0")...)
	defer s.stop(t)

	tok := strings.TrimSpace(tokenCLI(t, "", "token", "--sub", "alice", "--rooms", "lobby,photos", "--ttl", "3s").ok(t).stdout)
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q is not a compact JWS", tok)
	}
	// token check says what serve will make of it.
	var chk struct {
		User    string
		Rooms   []string
		Expires time.Time
		Publish bool
	}
	if err := json.Unmarshal([]byte(tokenCLI(t, tok+"\n", "token", "check").ok(t).stdout), &chk); err != nil {
		t.Fatal(err)
	}
	if chk.User != "alice" || strings.Join(chk.Rooms, ",") != "lobby,photos" || chk.Publish || time.Until(chk.Expires) > 4*time.Second {
		t.Errorf("token check = %+v", chk)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/v1/stream?rooms=lobby&access_token="+url.QueryEscape(tok), nil)
	resp, err := checkedClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/stream with the minted token: %d", resp.StatusCode)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Wait for the hello comment, then publish to the room.
	if l := <-lines; !strings.HasPrefix(l, `: eventbus: user "alice"`) {
		t.Fatalf("first line %q", l)
	}
	body := `{"specversion":"1.0","id":"e-room","source":"curl","type":"chat.message","room":"lobby","data":{"text":"hi"}}`
	preq, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/v1/events", strings.NewReader(body))
	preq.Header.Set("Authorization", "Bearer "+apiKey)
	preq.Header.Set("Content-Type", "application/cloudevents+json")
	presp, err := checkedClient(t).Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d", presp.StatusCode)
	}
	var sawEvent, sawRetry, sawExpired bool
	var all []string
	for l := range lines {
		all = append(all, l)
		switch {
		case l == "event: chat.message":
			sawEvent = true
		case strings.HasPrefix(l, "retry: "):
			sawRetry = true
		case l == "event: token-expired":
			sawExpired = true
		}
	}
	if !sawEvent || !sawRetry || !sawExpired {
		t.Errorf("stream: event %v, retry %v, token-expired %v; lines:\n%s", sawEvent, sawRetry, sawExpired, strings.Join(all, "\n"))
	}
}

// TestTokenCheckRefuses: token check exits 1 with the reason serve gives.
func TestTokenCheckRefuses(t *testing.T) {
	t.Parallel()
	good := strings.TrimSpace(tokenCLI(t, "", "token", "--sub", "bob").ok(t).stdout)
	parts := strings.Split(good, ".")
	// A payload whose rooms is a string: the claims do not decode, and the
	// error names the claim (before any signature check).
	badClaims := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"bob","exp":4102444800,"rooms":"lobby"}`)) + "." + parts[2]
	for _, tc := range []struct {
		tok  string
		want string
	}{
		{good[:len(good)-4] + "AAAA", "signature is invalid"},
		{badClaims, "claim rooms is a string: want an array of strings"},
		{"not-a-token", "malformed"},
	} {
		tokenCLI(t, "", "token", "check", tc.tok).failsWith(t, 1, "token refused", tc.want)
	}
	// Minting refuses bad input with exit 2.
	tokenCLI(t, "", "token").failsWith(t, 2, "--sub is required")
	tokenCLI(t, "", "token", "--sub", "x", "--ttl", "-1m").failsWith(t, 2, "--ttl")
	cmd := exec.CommandContext(t.Context(), binary, "token", "--sub", "x")
	cmd.Env = childEnv("EVENTBUS_JWT_SECRET=short")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "at least 32") {
		t.Errorf("a short secret: %s", out)
	}
}
