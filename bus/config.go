package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// Defaults for Config and SubscriberConfig. A zero field takes its default.
const (
	DefaultStreamPrefix       = "events:"
	DefaultMaxEventSize       = 1 << 20 // 1 MiB
	DefaultMaxLen             = 1_000_000
	DefaultContentType        = "application/json"
	DefaultBatchSize          = 100
	DefaultConcurrency        = 1
	DefaultBlockTime          = 250 * time.Millisecond
	DefaultClaimInterval      = 10 * time.Second
	DefaultClaimMinIdle       = 30 * time.Second
	DefaultResyncInterval     = 5 * time.Second
	DefaultCloseTimeout       = 30 * time.Second
	DefaultNackDelay          = 100 * time.Millisecond
	DefaultStartFrom          = "0"
	defaultMaxReadBackoff     = 5 * time.Second
	defaultInitialReadBackoff = 50 * time.Millisecond
	DefaultHeartbeatTTL       = 2 * time.Second
)

// Config configures a Bus: what every publisher and subscriber made from it
// shares.
type Config struct {
	// ServiceName names the publishing service: it is the "source" attribute
	// of every event published and the default consumer group. Required.
	ServiceName string

	// Client is the Redis connection (a *redis.Client, *redis.ClusterClient or
	// any redis.UniversalClient). The bus never closes it: the caller owns it.
	// Exactly one of Client and RedisURL must be set.
	Client redis.UniversalClient
	// RedisURL is used when Client is nil: a redis:// or rediss:// URL in one
	// of go-redis's three forms (see RedisURLKind and ParseRedisURL): one
	// server (redis.ParseURL), Sentinel (redis.ParseFailoverURL, told by its
	// master_name parameter) or Cluster (redis.ParseClusterURL, told by its
	// addr parameters); user, password and TLS included. The bus then owns
	// the client it opens and closes it in Close.
	RedisURL string
	// TLSConfig, when set, is used for a rediss:// RedisURL instead of the
	// default (system roots): set RootCAs to trust a private CA, or client
	// certificates. An empty ServerName is taken from the URL's host.
	TLSConfig *tls.Config

	// StreamPrefix is prepended to an event type to form its stream key.
	// Default DefaultStreamPrefix ("events:").
	StreamPrefix string

	// MaxEventSize is the largest event accepted, in bytes of data plus
	// attributes. Default DefaultMaxEventSize (1 MiB); -1 means no limit.
	MaxEventSize int

	// Retention bounds every stream. Acking never frees memory; trimming does.
	Retention Retention

	// DefaultContentType is the datacontenttype given to events published
	// without one. Default "application/json". Data under a JSON content type
	// must be valid JSON (or empty).
	DefaultContentType string

	// MaxDelay is the furthest in the future an event may be scheduled
	// (WithDeliverAt, WithDelay); later is ErrDelayTooLong. Default
	// DefaultMaxDelay (90 days); -1 means no limit.
	MaxDelay time.Duration
	// SchedulePollInterval is how often the bus's mover looks for due
	// scheduled events: the bound on how late one is delivered while a bus
	// runs. Default DefaultSchedulePollInterval; -1 runs no mover in this bus.
	SchedulePollInterval time.Duration
	// Durability, when its Replicas is set, makes every publish wait (Redis
	// WAIT) until that many replicas have its entries; see Durability.
	Durability Durability

	// SchemaResyncInterval bounds how long a Bus keeps using the schema
	// version it last read for a type: a new version stored by any process
	// is used at once when its announcement arrives, and at the latest this
	// long after. Default DefaultSchemaResyncInterval.
	SchemaResyncInterval time.Duration

	// TracerProvider records spans: "publish <type>" (producer) for every
	// event published, and the router's "process <type>" (consumer) for every
	// attempt of a handler. Nil records none; trace context and the
	// correlation/causation ids still propagate from event to event.
	TracerProvider trace.TracerProvider

	// DiscoveryInterval is how often the bus sweeps Redis for streams under
	// StreamPrefix that are missing from the type registry (SCAN ... TYPE
	// stream, on every master of a cluster): streams written by a plain XADD
	// of a non-Go producer, or a registry Redis lost. Each one found is added
	// to the registry and announced, so pattern subscriptions pick it up
	// within DiscoveryInterval plus their reaction to the announcement. Of
	// all buses on one prefix, one sweeps per interval. Default
	// DefaultDiscoveryInterval (30s, six times DefaultResyncInterval); -1
	// runs no sweep in this bus.
	DiscoveryInterval time.Duration

	// DedupWindow is how long an event id written to a stream is remembered:
	// a publish of the same id to the same stream within it writes nothing
	// and succeeds, and marks the message (IsDuplicate). It also absorbs
	// go-redis retrying a write whose reply was lost. Default
	// DefaultDedupWindow (2 minutes); -1 turns deduplication off. See
	// docs/reliability.md for what it costs.
	DedupWindow time.Duration
}

// Retention says how long streams keep their entries. Acking never frees
// memory; trimming does, in two ways:
//
//   - The bus's trimmer (see Bus.Trim), every TrimInterval, trims each stream
//     to KeepLen entries (or KeepAge), but never past what a consumer group
//     still needs: its oldest pending entry, else the entry after the last
//     one delivered to it. A lagging group makes its streams longer; nothing
//     it has not read is trimmed.
//   - MaxLen (or MaxAge) is the hard cap that guards memory, applied on every
//     XADD (MAXLEN ~ or MINID ~), read or not. What a cap, or anyone's XTRIM,
//     removes before a group read it is counted per group and stream
//     (Bus.Losses), logged as an error and shown by package observe and
//     `eventbus stats`: never silent.
type Retention struct {
	// MaxLen is the hard cap on a stream's length (XADD MAXLEN ~ on every
	// publish). Default DefaultMaxLen (1,000,000); -1 means no length cap.
	MaxLen int64
	// MaxAge, when set, is the hard cap by age instead (XADD MINID ~), and
	// MaxLen is ignored.
	MaxAge time.Duration

	// KeepLen is the length the trimmer trims a stream to when no group
	// needs more. Default DefaultKeepLen (100,000), or MaxLen if that is
	// smaller; -1 means the trimmer trims nothing by length (streams grow
	// to the cap).
	KeepLen int64
	// KeepAge, when set, makes the trimmer trim entries older than this
	// (once no group needs them) instead, and KeepLen is ignored.
	KeepAge time.Duration
	// TrimInterval is how often the bus's trimmer makes a retention pass
	// (loss accounting, then the reader-safe trim). Of all buses on one
	// prefix, one makes each interval's pass. Default DefaultTrimInterval
	// (10s); -1 runs no trimmer in this bus: then losses are only counted,
	// and streams only trimmed below the caps, by another bus or Bus.Trim.
	TrimInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.StreamPrefix == "" {
		c.StreamPrefix = DefaultStreamPrefix
	}
	if c.MaxEventSize == 0 {
		c.MaxEventSize = DefaultMaxEventSize
	}
	if c.Retention.MaxLen == 0 {
		c.Retention.MaxLen = DefaultMaxLen
	}
	if c.Retention.KeepLen == 0 && c.Retention.KeepAge == 0 {
		c.Retention.KeepLen = DefaultKeepLen
		if c.Retention.MaxAge == 0 && c.Retention.MaxLen > 0 && c.Retention.MaxLen < DefaultKeepLen {
			c.Retention.KeepLen = c.Retention.MaxLen
		}
	}
	if c.Retention.TrimInterval == 0 {
		c.Retention.TrimInterval = DefaultTrimInterval
	}
	if c.DiscoveryInterval == 0 {
		c.DiscoveryInterval = DefaultDiscoveryInterval
	}
	if c.DefaultContentType == "" {
		c.DefaultContentType = DefaultContentType
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.SchedulePollInterval == 0 {
		c.SchedulePollInterval = DefaultSchedulePollInterval
	}
	if c.SchemaResyncInterval == 0 {
		c.SchemaResyncInterval = DefaultSchemaResyncInterval
	}
	c.Durability.setDefaults()
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
}

// Validate reports every problem with the config at once. It never changes c.
func (c Config) Validate() error {
	var errs []error
	if c.ServiceName == "" {
		errs = append(errs, errors.New("ServiceName is required (it becomes the source attribute and the default consumer group)"))
	} else if strings.ContainsAny(c.ServiceName, " \t\r\n") {
		errs = append(errs, fmt.Errorf("ServiceName %q must not contain white space", c.ServiceName))
	}
	switch {
	case c.Client == nil && c.RedisURL == "":
		errs = append(errs, errors.New("set Client or RedisURL"))
	case c.Client != nil && c.RedisURL != "":
		errs = append(errs, errors.New("set only one of Client and RedisURL"))
	case c.RedisURL != "":
		if _, err := ParseRedisURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("RedisURL %s: %w", RedactURL(c.RedisURL), err))
		}
	}
	if c.TLSConfig != nil && c.Client != nil {
		errs = append(errs, errors.New("TLSConfig applies to RedisURL only: configure TLS on the Client you pass"))
	}
	if strings.ContainsAny(c.StreamPrefix, "{}") {
		errs = append(errs, fmt.Errorf("StreamPrefix %q must not contain '{' or '}': hash tags would put every stream in one cluster slot", c.StreamPrefix))
	}
	if c.MaxEventSize < -1 {
		errs = append(errs, fmt.Errorf("MaxEventSize %d: use a positive size, 0 for the default or -1 for no limit", c.MaxEventSize))
	}
	if c.Retention.MaxLen < -1 {
		errs = append(errs, fmt.Errorf("Retention.MaxLen %d: use a positive length, 0 for the default or -1 for no limit", c.Retention.MaxLen))
	}
	if c.Retention.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("Retention.MaxAge %s must not be negative", c.Retention.MaxAge))
	}
	if c.Retention.KeepLen < -1 {
		errs = append(errs, fmt.Errorf("Retention.KeepLen %d: use a positive length, 0 for the default or -1 for no length target", c.Retention.KeepLen))
	} else if c.Retention.KeepLen > 0 && c.Retention.MaxAge == 0 && c.Retention.MaxLen > 0 && c.Retention.KeepLen > c.Retention.MaxLen {
		errs = append(errs, fmt.Errorf("Retention.KeepLen %d exceeds the cap Retention.MaxLen %d: keep at most the cap", c.Retention.KeepLen, c.Retention.MaxLen))
	}
	if c.Retention.KeepAge < 0 {
		errs = append(errs, fmt.Errorf("Retention.KeepAge %s must not be negative", c.Retention.KeepAge))
	} else if c.Retention.KeepAge > 0 && c.Retention.MaxAge > 0 && c.Retention.KeepAge > c.Retention.MaxAge {
		errs = append(errs, fmt.Errorf("Retention.KeepAge %s exceeds the cap Retention.MaxAge %s: keep at most the cap", c.Retention.KeepAge, c.Retention.MaxAge))
	}
	if c.Retention.TrimInterval < -1 || (c.Retention.TrimInterval > 0 && c.Retention.TrimInterval < time.Millisecond) {
		errs = append(errs, fmt.Errorf("Retention.TrimInterval %s: use at least 1ms, or -1 for no trimmer in this bus", c.Retention.TrimInterval))
	}
	if c.DiscoveryInterval < -1 || (c.DiscoveryInterval > 0 && c.DiscoveryInterval < time.Millisecond) {
		errs = append(errs, fmt.Errorf("DiscoveryInterval %s: use at least 1ms, or -1 for no discovery sweep in this bus", c.DiscoveryInterval))
	}
	if c.MaxDelay < -1 {
		errs = append(errs, fmt.Errorf("MaxDelay %s: use a positive duration, 0 for the default or -1 for no limit", c.MaxDelay))
	}
	if c.SchedulePollInterval < -1 || (c.SchedulePollInterval > 0 && c.SchedulePollInterval < time.Millisecond) {
		errs = append(errs, fmt.Errorf("SchedulePollInterval %s: use at least 1ms, or -1 for no mover", c.SchedulePollInterval))
	}
	if c.SchemaResyncInterval < 0 || (c.SchemaResyncInterval > 0 && c.SchemaResyncInterval < time.Millisecond) {
		errs = append(errs, fmt.Errorf("SchemaResyncInterval %s must be at least 1ms", c.SchemaResyncInterval))
	}
	errs = append(errs, c.Durability.validate()...)
	if c.DedupWindow < -1 || (c.DedupWindow > 0 && c.DedupWindow < time.Millisecond) {
		errs = append(errs, fmt.Errorf("DedupWindow %s: use at least 1ms, 0 for the default or -1 for no deduplication", c.DedupWindow))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// StreamKey returns the Redis key of the stream that holds events of type t.
func (c Config) StreamKey(t string) string { return c.StreamPrefix + t }

// DeadLetterKey is the stream that holds dead letters. It cannot collide with
// the stream of any valid event type ('$' is not allowed in types).
func (c Config) DeadLetterKey() string { return c.StreamPrefix + "$dlq" }

// RegistryKey is the set of every event type ever published under this
// prefix; the same name is the Pub/Sub channel that announces new types.
func (c Config) RegistryKey() string { return c.StreamPrefix + "$types" }

// PushKey is the stream that holds a copy of every event addressed to
// browsers (room, user or broadcast), in publish order, for the gateway.
func (c Config) PushKey() string { return c.StreamPrefix + "$push" }

// RedactURL returns u with any password replaced by "xxxxx", for logs and
// errors: the user info's and the password and sentinel_password query
// parameters of the Sentinel form. Credentials never appear in what the bus
// prints.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<unparsable URL>"
	}
	if q := p.Query(); q.Has("password") || q.Has("sentinel_password") {
		for _, k := range []string{"password", "sentinel_password"} {
			if q.Has(k) {
				q.Set(k, "xxxxx")
			}
		}
		p.RawQuery = q.Encode()
	}
	return p.Redacted()
}

// redactErr returns err's text with the credentials of rawURL removed,
// even when rawURL cannot be parsed (see Redactor).
func redactErr(err error, rawURL string) string {
	return Redactor(rawURL, nil)(err.Error())
}

// SubscriberConfig configures one Subscriber: one consumer group.
type SubscriberConfig struct {
	// ConsumerGroup is the Redis consumer group. Every handler should have its
	// own (the router uses "<service>.<handler>"); instances of one service
	// share it and split the load. Default: the bus's ServiceName.
	ConsumerGroup string
	// Consumer names this instance within the group. Default: host name,
	// process id and a random suffix, unique per Subscriber.
	Consumer string

	// BatchSize bounds the entries read but not yet acked. A read asks for
	// the room left, split between the subscription's streams (XREADGROUP's
	// COUNT applies per stream) but at least one entry per stream, so a
	// pattern that matches more streams than BatchSize may have up to one
	// entry per stream read ahead. Default DefaultBatchSize.
	BatchSize int
	// Concurrency is how many messages may be delivered and unacked at once.
	// With 1 (the default) a handler sees each stream's entries in order.
	Concurrency int
	// BlockTime is how long one XREADGROUP waits for new entries; it also
	// bounds how long acks of an idle subscription wait to be flushed and how
	// long Close waits for the reader. Default DefaultBlockTime.
	BlockTime time.Duration

	// ClaimInterval is how often entries left pending by other (dead)
	// consumers are looked for. Default DefaultClaimInterval; -1 disables.
	ClaimInterval time.Duration
	// ClaimMinIdle is how long an entry must have been idle before it is
	// claimed from another consumer. Entries this subscriber is still working
	// on are kept fresh (their idle time reset) so they are never claimed
	// while in progress. Default DefaultClaimMinIdle.
	ClaimMinIdle time.Duration
	// HeartbeatTTL is the lifetime of this consumer's heartbeat key,
	// refreshed every HeartbeatTTL/4. When a consumer's heartbeat is gone
	// (it was killed), the group's other consumers claim its pending entries
	// at once instead of after ClaimMinIdle: within about HeartbeatTTL plus
	// HeartbeatTTL/4. Default DefaultHeartbeatTTL (2 s); -1 keeps no
	// heartbeat (entries of a dead consumer are claimed after ClaimMinIdle).
	HeartbeatTTL time.Duration
	// ShouldClaim, when set, decides whether an idle pending entry of another
	// consumer is claimed (a policy hook, as in watermill-redisstream).
	ShouldClaim func(redis.XPendingExt) bool

	// NackDelay is how long a nacked message waits before it is delivered
	// again. Default DefaultNackDelay; -1 means no delay.
	NackDelay time.Duration
	// StartFrom is where a new consumer group starts on a stream that exists
	// when the subscription starts: "0" (the default, every retained entry) or
	// "$" (only new entries). Streams a pattern subscription discovers later
	// are always read from their first entry.
	StartFrom string
	// ResyncInterval is how often a pattern subscription re-reads the type
	// registry, repairing any missed new-type notification. Default
	// DefaultResyncInterval.
	ResyncInterval time.Duration
	// CloseTimeout bounds how long Close waits for in-flight messages to be
	// acked or nacked. Unfinished ones stay pending for another consumer.
	// Default DefaultCloseTimeout.
	CloseTimeout time.Duration

	// Unmarshaller decodes entries. Default Marshaller{}.
	Unmarshaller Unmarshaller
}

func (c *SubscriberConfig) setDefaults(b Config) {
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = b.ServiceName
	}
	if c.Consumer == "" {
		c.Consumer = defaultConsumerName()
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BlockTime == 0 {
		c.BlockTime = DefaultBlockTime
	}
	if c.ClaimInterval == 0 {
		c.ClaimInterval = DefaultClaimInterval
	}
	if c.ClaimMinIdle == 0 {
		c.ClaimMinIdle = DefaultClaimMinIdle
	}
	if c.NackDelay == 0 {
		c.NackDelay = DefaultNackDelay
	}
	if c.HeartbeatTTL == 0 {
		c.HeartbeatTTL = DefaultHeartbeatTTL
	}
	if c.StartFrom == "" {
		c.StartFrom = DefaultStartFrom
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.Unmarshaller == nil {
		c.Unmarshaller = Marshaller{}
	}
}

// Validate reports every problem with the config at once. It never changes c.
func (c SubscriberConfig) Validate() error {
	var errs []error
	if c.ConsumerGroup == "" {
		errs = append(errs, errors.New("ConsumerGroup is required"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("BatchSize %d must be at least 1", c.BatchSize))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("SubscriberConfig.Concurrency %d must be at least 1", c.Concurrency))
	}
	if c.BlockTime < time.Millisecond {
		errs = append(errs, fmt.Errorf("BlockTime %s must be at least 1ms", c.BlockTime))
	}
	if c.ClaimInterval < -1 || (c.ClaimInterval > 0 && c.ClaimInterval < time.Millisecond) {
		errs = append(errs, fmt.Errorf("ClaimInterval %s: use at least 1ms, or -1 to disable claiming", c.ClaimInterval))
	}
	if c.ClaimMinIdle < 3*time.Millisecond {
		errs = append(errs, fmt.Errorf("ClaimMinIdle %s must be at least 3ms", c.ClaimMinIdle))
	}
	if c.HeartbeatTTL < -1 || (c.HeartbeatTTL > 0 && c.HeartbeatTTL < 4*time.Millisecond) {
		errs = append(errs, fmt.Errorf("HeartbeatTTL %s: use at least 4ms, or -1 for no heartbeat", c.HeartbeatTTL))
	}
	if c.StartFrom != "0" && c.StartFrom != "$" {
		errs = append(errs, fmt.Errorf("StartFrom %q: use \"0\" (all retained entries) or \"$\" (new entries only)", c.StartFrom))
	}
	if c.ResyncInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("ResyncInterval %s must be at least 1ms", c.ResyncInterval))
	}
	if c.CloseTimeout < 0 {
		errs = append(errs, fmt.Errorf("CloseTimeout %s must not be negative", c.CloseTimeout))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
