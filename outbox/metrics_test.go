package outbox_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/outbox"
)

func TestForwarderMetrics(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	for range 3 {
		_, err := bus.Publish(ctx, e.ob.Publisher(tx), "order.placed", 1)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
	_, err = e.db.ExecContext(ctx, `INSERT INTO "`+e.table+`" (uuid, payload, metadata) VALUES ('junk', '[]', '{}')`)
	require.NoError(t, err)

	e.forward(t, outbox.ForwarderConfig{Registerer: reg})
	e.entries(t, "order.placed", 3)
	labels := `{table="` + e.table + `"}`
	want := `
# HELP eventbus_outbox_database_up 1 if the last scrape could query the outbox table, else 0.
# TYPE eventbus_outbox_database_up gauge
eventbus_outbox_database_up` + labels + ` 1
# HELP eventbus_outbox_forwarded_total Events the forwarder published to the bus (a re-publish after a crash counts again; the bus drops it as a duplicate).
# TYPE eventbus_outbox_forwarded_total counter
eventbus_outbox_forwarded_total` + labels + ` 3
# HELP eventbus_outbox_pending_rows Rows waiting in the outbox table.
# TYPE eventbus_outbox_pending_rows gauge
eventbus_outbox_pending_rows` + labels + ` 0
# HELP eventbus_outbox_publish_errors_total Failed publishes to the bus; the row stays and is retried.
# TYPE eventbus_outbox_publish_errors_total counter
eventbus_outbox_publish_errors_total` + labels + ` 0
# HELP eventbus_outbox_set_aside_total Rows moved to the _failed table (not an envelope, or refused by the bus for good).
# TYPE eventbus_outbox_set_aside_total counter
eventbus_outbox_set_aside_total` + labels + ` 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"eventbus_outbox_database_up", "eventbus_outbox_forwarded_total", "eventbus_outbox_pending_rows",
		"eventbus_outbox_publish_errors_total", "eventbus_outbox_set_aside_total"))
	n, err := testutil.GatherAndCount(reg, "eventbus_outbox_forward_lag_seconds", "eventbus_outbox_oldest_pending_seconds")
	require.NoError(t, err)
	require.Equal(t, 2, n)
}
