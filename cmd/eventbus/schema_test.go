package main_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/router"
)

const orderSchema = `{"type":"object","required":["orderId"],"properties":{"orderId":{"type":"string","minLength":1}}}`

// The same schema-invalid event sent every way into the bus — the bus
// Publisher, the router's Publisher, the gateway's ingress, the CLI and
// dead-letter redrive — gets the same refusal, and nothing is written.
func TestSchemaInvalidEventIsRefusedOnEveryPath(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	ctx := t.Context()
	b := newBus(t, c, prefix)
	s, err := b.Schemas().Put(ctx, "order.placed", []byte(orderSchema))
	if err != nil {
		t.Fatal(err)
	}
	const bad = `{"total":1}`
	// The refusal every path must report, word for word.
	refusal := `order.placed data does not match schema ` + s.URI + `: at "": missing property 'orderId'`
	check := func(path string, err error) {
		t.Helper()
		if !errors.Is(err, bus.ErrSchemaViolation) || !strings.Contains(err.Error(), refusal) {
			t.Errorf("%s: got %v, want the schema refusal %q", path, err, refusal)
		}
	}
	ev := func() *message.Message { return message.NewMessage(watermill.NewUUID(), []byte(bad)) }

	// 1. The bus Publisher.
	check("bus publisher", b.Publisher().Publish("order.placed", ev()))

	// 2. The router's Publisher.
	r, err := router.New(b, router.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	check("router publisher", r.Publisher().Publish("order.placed", ev()))

	// 3. The gateway's ingress.
	const apiKey = "test-api-key-0123456789abcdef0123"
	g, err := gateway.New(b, gateway.Config{
		Auth:    gateway.AuthConfig{HMACSecret: []byte("0123456789abcdef0123456789abcdef")},
		Ingress: gateway.IngressConfig{APIKeys: []string{apiKey}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+gateway.EventsPath, strings.NewReader(
		`{"specversion":"1.0","id":"`+watermill.NewUUID()+`","type":"order.placed","source":"shop","datacontenttype":"application/json","data":`+bad+`}`))
	req.Header.Set("Content-Type", gateway.ContentTypeStructured)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := checkedClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), strings.ReplaceAll(refusal, `"`, `\"`)) {
		t.Errorf("ingress: %d %s, want 400 with the schema refusal %q", resp.StatusCode, body, refusal)
	}

	// 4. The CLI.
	cli(t, "", with(global, "publish", "order.placed", bad)...).failsWith(t, 2, refusal)

	// 5. Dead-letter redrive.
	q := b.DeadLetters()
	addDeadLetter(t, q, "order.placed", bad, "h", "boom")
	_, err = q.Redrive(ctx, bus.RedriveFilter{})
	check("redrive", err)
	cli(t, "", with(global, "dlq", "redrive", "--all", "--yes")...).failsWith(t, 2, refusal)

	if n := c.XLen(ctx, prefix+"order.placed").Val(); n != 0 {
		t.Errorf("order.placed holds %d entries, want none: every path refused", n)
	}
	if n, _ := q.Len(ctx); n != 1 {
		t.Errorf("%d dead letters, want the one that could not be redriven", n)
	}
}

func TestSchemaCommands(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	ctx := t.Context()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := file("v1.json", orderSchema)
	strict := file("strict.json", `{"type":"object","required":["orderId","total"]}`)

	r := cli(t, "", with(global, "schema", "put", "order.placed", v1)...).ok(t)
	if r.stdout != "order.placed version 1 (urn:eventbus:schema:order.placed:1)\n" {
		t.Errorf("put: %q", r.stdout)
	}
	cli(t, "", with(global, "schema", "put", "order.placed", v1)...).ok(t) // the same: still version 1
	r = cli(t, "", with(global, "schema", "get", "order.placed")...).ok(t)
	if strings.TrimSpace(r.stdout) != orderSchema {
		t.Errorf("get: %q, want %s", r.stdout, orderSchema)
	}

	// A retained event the strict schema rejects: check and put name it.
	cli(t, "", with(global, "publish", "order.placed", `{"orderId":"A-1"}`)...).ok(t)
	id := c.XRange(ctx, prefix+"order.placed", "-", "+").Val()[0].ID
	cli(t, "", with(global, "schema", "check", "order.placed", strict)...).failsWith(t, 2, "rejects 1 of the 1 retained events", id, "missing property 'total'")
	cli(t, "", with(global, "schema", "put", "order.placed", strict)...).failsWith(t, 2, "rejects 1 of the 1 retained events", id)
	r = cli(t, "", with(global, "schema", "list")...).ok(t)
	if !strings.Contains(r.stdout, "order.placed  1 ") {
		t.Errorf("list after a refused put: %q, want version 1", r.stdout)
	}
	r = cli(t, "", with(global, "schema", "put", "order.placed", strict, "--force")...).ok(t)
	if !strings.Contains(r.stdout, "version 2") {
		t.Errorf("put --force: %q", r.stdout)
	}
	r = cli(t, "", with(global, "schema", "get", "order.placed", "--version", "1")...).ok(t)
	if strings.TrimSpace(r.stdout) != orderSchema {
		t.Errorf("get --version 1: %q", r.stdout)
	}

	cli(t, "", with(global, "schema", "put", "order.placed", file("bad.json", `{"type":12}`))...).failsWith(t, 2, "invalid JSON Schema", `at "/type"`)
	cli(t, "", with(global, "schema", "put", "Order..x", v1)...).failsWith(t, 2, "invalid event type")
	cli(t, "", with(global, "schema", "get", "order.none")...).failsWith(t, 2, "no schema is registered for order.none")
}
