package main_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shared-infra/eventbus/internal/redistest"
)

func TestServe(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	const apiKey = "test-key-0123456789abcdef"
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, with(global, "serve", "--listen", "127.0.0.1:0")...)
	cmd.Env = childEnv("REDIS_URL="+redistest.URL(), "EVENTBUS_JWT_SECRET=0123456789abcdef0123456789abcdef-secret", "EVENTBUS_API_KEYS="+apiKey)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The first line of interest says where it listens; drain the rest.
	addrRe := regexp.MustCompile(`listening on (http://[0-9.]+:[0-9]+)`)
	var base string
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for base == "" && sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		_ = cmd.Wait()
		t.Fatalf("serve did not say where it listens; stderr:\n%s", log.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	waitReady(t, base)

	// Ingress with the API key.
	body := `{"specversion":"1.0","id":"e-1","source":"curl","type":"photo.uploaded","subject":"p-42","data":{"photoId":"p-42"}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := checkedClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(out), `"e-1"`) {
		t.Fatalf("POST /v1/events: %d %s, want 202 with the id", resp.StatusCode, out)
	}
	if e := c.XRange(ctx, prefix+"photo.uploaded", "-", "+").Val(); len(e) != 1 || e[0].Values["subject"] != "p-42" {
		t.Errorf("stream after ingress: %v", e)
	}
	// No credentials: 401.
	resp, err = checkedClient(t).Post(base+"/v1/events", "application/cloudevents+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST without credentials: %d, want 401", resp.StatusCode)
	}
	// Health endpoints.
	for _, path := range []string{"/healthz", "/readyz", "/stats", "/metrics"} {
		resp, err := checkedClient(t).Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", path, resp.StatusCode)
		}
		if path == "/stats" && !strings.Contains(string(b), `"service":"eventbus-gateway"`) {
			t.Errorf("/stats does not name the service eventbus-gateway: %s", b)
		}
		if path == "/metrics" {
			for _, series := range []string{"eventbus_build_info{", "go_goroutines ", "process_cpu_seconds_total ",
				"eventbus_gateway_streams_open ", `eventbus_gateway_ingress_requests_total{status="202"} 1`, `eventbus_gateway_ingress_requests_total{status="401"} 1`,
				"eventbus_gateway_push_reader_lag_seconds ", "eventbus_gateway_push_reader_position_seconds "} {
				if !strings.Contains(string(b), "\n"+series) {
					t.Errorf("/metrics has no %s series", series)
				}
			}
		}
	}

	// SIGINT: a clean shutdown, exit 0.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGINT: %v, want exit 0", err)
	}
}

func TestServeNeedsCredentials(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	cmd := exec.CommandContext(t.Context(), binary, with(global, "serve", "--listen", "127.0.0.1:0")...)
	cmd.Env = childEnv("REDIS_URL="+redistest.URL(), "EVENTBUS_JWT_SECRET=", "EVENTBUS_API_KEYS=")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	}
	r.failsWith(t, 2, "EVENTBUS_JWT_SECRET", "EVENTBUS_API_KEYS")
}

func TestDemoEmbedded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	// No REDIS_URL: the demo starts its own (embedded) Redis.
	cmd := exec.CommandContext(ctx, binary, "demo", "--scale", "0.1")
	cmd.Env = childEnv("REDIS_URL=")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("eventbus demo: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"embedded Redis", "photo.uploaded", "photo.processing.completed", "photo.notification", "summary: 6 photos"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
