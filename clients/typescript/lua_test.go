package typescript_test

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// TestTypeScriptLuaCopy fails when the Node publisher's copy of the dedup
// script (src/lua.generated.ts, written by scripts/gen-lua.mjs at build
// time) differs from the one the Go publisher embeds: a Go and a Node
// publisher would then not run the same write. Fix: `npm run build` in
// clients/typescript, and commit src/lua.generated.ts.
func TestTypeScriptLuaCopy(t *testing.T) {
	src, err := os.ReadFile("src/lua.generated.ts")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^export const dedupXAddLua = (".*");$`).FindSubmatch(src)
	require.NotNil(t, m, "src/lua.generated.ts has no dedupXAddLua")
	var copied string
	require.NoError(t, json.Unmarshal(m[1], &copied))
	assert.Equal(t, bus.DedupScript(), copied, "src/lua.generated.ts is stale: run `npm run build` in clients/typescript and commit it")
}
