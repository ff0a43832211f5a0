package pgtest_test

import (
	"context"
	"testing"

	"github.com/shared-infra/eventbus/internal/pgtest"
)

func TestDBAndName(t *testing.T) {
	db := pgtest.DB(t)
	name := pgtest.Name(t, db, "pgtest")
	if _, err := db.Exec(`CREATE TABLE "` + name + `" (x INT)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM "` + name + `"`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("count %d, %v", n, err)
	}
}

func TestServerSurvivesRestart(t *testing.T) {
	srv := pgtest.StartServer(t)
	ctx := context.Background()
	db, err := pgtest.Open(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE kept (x INT); INSERT INTO kept VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("ping succeeded while the server is stopped")
	}
	srv.Start()
	var x int
	if err := db.QueryRowContext(ctx, `SELECT x FROM kept`).Scan(&x); err != nil || x != 7 {
		t.Fatalf("after restart: x=%d, %v", x, err)
	}
}
