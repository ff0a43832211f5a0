// Command scalesim prints docs/scale.md's tables from the recorded inputs,
// or measures the Redis inputs again.
//
//	go run ./internal/scalesim/cmd/scalesim                 # the tables
//	go run ./internal/scalesim/cmd/scalesim -measure         # Redis figures, on a redis-server of its own
//
// -measure starts redis-server (from $PATH) on a free loopback port, so
// that INFO cpu counts only the measured commands, and prints the Redis
// part of inputs.json; the gateway figures come from make bench-gateway and
// go test -bench 'DispatchNotAddressed|RenderPushEntry' ./gateway/.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/scalesim"
)

func main() {
	measure := flag.Bool("measure", false, "measure the Redis figures on a redis-server of its own")
	events := flag.Int("events", 50_000, "events per measured operation")
	inputs := flag.String("inputs", "internal/scalesim/testdata/inputs.json", "the recorded inputs")
	flag.Parse()
	if err := run(*measure, *events, *inputs); err != nil {
		fmt.Fprintln(os.Stderr, "scalesim:", err)
		os.Exit(1)
	}
}

func run(measure bool, events int, inputs string) error {
	if !measure {
		in, err := scalesim.LoadInputs(inputs)
		if err != nil {
			return err
		}
		fmt.Print(scalesim.Report(in, scalesim.Internet(), scalesim.Cloud(), scalesim.Designs(), scalesim.DefaultActivity()))
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "scalesim")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	defer client.Close()
	ctx := context.Background()
	for i := 0; client.Ping(ctx).Err() != nil; i++ {
		if i > 100 {
			return fmt.Errorf("redis-server on port %d does not answer", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rc, err := scalesim.Measure(ctx, client, events)
	if err != nil {
		return err
	}
	src, err := os.ReadFile("bus/lua/dedup_xadd.lua")
	if err != nil {
		return fmt.Errorf("run from the module root: %w", err)
	}
	sc, err := scalesim.MeasureScripts(ctx, client, string(src), events)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(struct {
		Redis   scalesim.RedisCosts  `json:"redis"`
		Scripts scalesim.ScriptCosts `json:"scripts (not used by the model)"`
	}{rc, sc}, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
