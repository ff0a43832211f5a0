package outbox

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shared-infra/eventbus/bus"
)

// Defaults of Config and ForwarderConfig.
const (
	DefaultTable         = "eventbus_outbox"
	DefaultBatchSize     = 100
	DefaultPollInterval  = 100 * time.Millisecond
	DefaultRetryInterval = time.Second
	DefaultCloseTimeout  = 30 * time.Second
)

// ErrInvalidConfig wraps every configuration problem reported by Validate.
// It wraps bus.ErrInvalidConfig, as every package's config errors do.
var ErrInvalidConfig = fmt.Errorf("outbox: %w", bus.ErrInvalidConfig)

var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func validateTable(t string) error {
	if !tableName.MatchString(t) {
		return fmt.Errorf("%w: table %q must match [a-z_][a-z0-9_]{0,62} (a plain PostgreSQL identifier)", ErrInvalidConfig, t)
	}
	return nil
}

// Preparer enriches and validates events as the bus publisher would, without
// writing them. *bus.Publisher implements it (bus.Publisher.Prepare).
type Preparer interface {
	Prepare(topic string, msgs ...*message.Message) error
}

// Config configures an Outbox (the writer side).
type Config struct {
	// Table is the outbox table. Default DefaultTable. A plain lower-case
	// identifier, [a-z_][a-z0-9_]{0,62}.
	Table string
	// Bus checks and enriches every event before it is stored, as a direct
	// publish would (the JSON Schema of its type from the bus's schema
	// registry, trace context and correlation from the message's context):
	// pass the bus's Publisher (bus.Bus.Publisher()). Required.
	Bus Preparer
}

func (c *Config) setDefaults() {
	if c.Table == "" {
		c.Table = DefaultTable
	}
}

// Validate reports every problem of c at once. It does not change c.
func (c Config) Validate() error {
	var errs []error
	if err := validateTable(c.Table); err != nil {
		errs = append(errs, err)
	}
	if c.Bus == nil {
		errs = append(errs, fmt.Errorf("%w: Bus is nil: pass the bus's Publisher, which checks every event before it is stored", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	// Table is the outbox table. Default DefaultTable.
	Table string
	// BatchSize is how many rows one transaction reads, forwards and deletes.
	// A Forwarder killed mid-batch publishes at most this many events again
	// (the bus's dedup window drops them). Default DefaultBatchSize.
	BatchSize int
	// PollInterval is the wait after a read found no row: the added latency
	// of an event committed to an idle outbox is up to this. Default
	// DefaultPollInterval.
	PollInterval time.Duration
	// RetryInterval is the wait after a database error, and before a row
	// whose publish failed is tried again. Default DefaultRetryInterval.
	RetryInterval time.Duration
	// CloseTimeout bounds Close's wait for the event being forwarded.
	// Default DefaultCloseTimeout.
	CloseTimeout time.Duration
	// Registerer receives the forwarder's metrics (see docs/outbox.md). Nil:
	// no metrics.
	Registerer prometheus.Registerer
}

func (c *ForwarderConfig) setDefaults() {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
}

// Validate reports every problem of c at once. It does not change c.
func (c ForwarderConfig) Validate() error {
	var errs []error
	if err := validateTable(c.Table); err != nil {
		errs = append(errs, err)
	}
	if c.BatchSize < 1 || c.BatchSize > 10000 {
		errs = append(errs, fmt.Errorf("%w: BatchSize %d must be between 1 and 10000", ErrInvalidConfig, c.BatchSize))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: PollInterval %v must be positive", ErrInvalidConfig, c.PollInterval))
	}
	if c.RetryInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: RetryInterval %v must be positive", ErrInvalidConfig, c.RetryInterval))
	}
	if c.CloseTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: CloseTimeout %v must be positive", ErrInvalidConfig, c.CloseTimeout))
	}
	return errors.Join(errs...)
}
