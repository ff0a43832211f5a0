package demo_test

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/demo"
	"github.com/shared-infra/eventbus/internal/pgtest"
)

func TestRunThroughTheOutbox(t *testing.T) {
	db := pgtest.DB(t) // fails, saying how to get one, if no PostgreSQL answers
	var out bytes.Buffer
	sum, err := demo.Run(t.Context(), &out, demo.Options{ImageScale: 0.25, PostgresURL: pgtest.URL()})
	require.NoError(t, err, out.String())
	assert.Contains(t, sum.Mode, "transactional outbox")
	assert.Contains(t, out.String(), "uploads: transactional outbox on PostgreSQL")
	assert.Equal(t, sum.Photos, sum.Completed+sum.Failed)
	assert.Equal(t, 4, sum.Completed)
	assert.Zero(t, sum.DeadLetters)
	tables := regexp.MustCompile(`demo_[0-9a-f]{8}_(photos|outbox)`).FindAllString(sum.Mode, -1)
	require.Len(t, tables, 2, sum.Mode)
	for _, tb := range tables {
		var left int
		require.NoError(t, db.QueryRow(`SELECT count(*) FROM pg_tables WHERE tablename = $1`, tb).Scan(&left))
		assert.Zero(t, left, "table %s is dropped at the end of the run", tb)
	}
}

func TestRunSaysDirectModeWithoutPostgres(t *testing.T) {
	var out bytes.Buffer
	sum, err := demo.Run(t.Context(), &out, demo.Options{ImageScale: 0.25})
	require.NoError(t, err, out.String())
	assert.Equal(t, "direct publish (no PostgreSQL configured)", sum.Mode)
	assert.Contains(t, out.String(), "uploads: direct publish")
}
