package bench

import "time"

// Internals for the black-box tests of package bench_test.
var (
	BusFields = busFields
	Payload   = payload
)

// EventType is the event type of the single-stream scenarios.
const EventType = evType

// ProcessCPU is processCPU.
func ProcessCPU() time.Duration { return processCPU() }
