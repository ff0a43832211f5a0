package bus_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

func TestParseRedisURLForms(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		kind     bus.RedisURLKind
		addrs    []string // sentinel or cluster seed addresses
		master   string
		user     string
		password string
		tls      bool
	}{
		{name: "single", url: "redis://u:p@h:6379/2", kind: bus.URLSingle, addrs: []string{"h:6379"}, user: "u", password: "p"},
		{name: "single tls", url: "rediss://h:6380", kind: bus.URLSingle, addrs: []string{"h:6380"}, tls: true},
		{name: "sentinel one", url: "redis://s1:26379?master_name=mymaster", kind: bus.URLSentinel, addrs: []string{"s1:26379"}, master: "mymaster"},
		{name: "sentinel three with data-node ACL user", url: "redis://s1:26379/0?master_name=m&addr=s2:26380&addr=s3:26381&username=app&password=secret",
			kind: bus.URLSentinel, addrs: []string{"s1:26379", "s2:26380", "s3:26381"}, master: "m", user: "app", password: "secret"},
		{name: "sentinel tls", url: "rediss://s1:26379?master_name=m", kind: bus.URLSentinel, addrs: []string{"s1:26379"}, master: "m", tls: true},
		{name: "cluster", url: "redis://u:p@n1:7000?addr=n2:7001&addr=n3:7002", kind: bus.URLCluster, addrs: []string{"n1:7000", "n2:7001", "n3:7002"}, user: "u", password: "p"},
		{name: "cluster tls", url: "rediss://n1:7000?addr=n2:7001", kind: bus.URLCluster, addrs: []string{"n1:7000", "n2:7001"}, tls: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := bus.ParseRedisURL(tt.url)
			require.NoError(t, err)
			assert.Equal(t, tt.kind, p.Kind)
			switch tt.kind {
			case bus.URLSingle:
				assert.Equal(t, tt.addrs[0], p.Single.Addr)
				assert.Equal(t, tt.user, p.Single.Username)
				assert.Equal(t, tt.password, p.Single.Password)
				assert.Equal(t, tt.tls, p.Single.TLSConfig != nil)
			case bus.URLSentinel:
				assert.Equal(t, tt.addrs, p.Sentinel.SentinelAddrs)
				assert.Equal(t, tt.master, p.Sentinel.MasterName)
				assert.Equal(t, tt.user, p.Sentinel.Username)
				assert.Equal(t, tt.password, p.Sentinel.Password)
				assert.Equal(t, tt.tls, p.Sentinel.TLSConfig != nil)
			case bus.URLCluster:
				assert.Equal(t, tt.addrs, p.Cluster.Addrs)
				assert.Equal(t, tt.user, p.Cluster.Username)
				assert.Equal(t, tt.password, p.Cluster.Password)
				assert.Equal(t, tt.tls, p.Cluster.TLSConfig != nil)
			}
			cfg := bus.Config{ServiceName: "svc", RedisURL: tt.url}
			assert.NoError(t, cfg.Validate())
		})
	}
}

func TestParseRedisURLErrorsNameTheProblemNotThePassword(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want string // in the error
	}{
		{name: "bad scheme", url: "http://u:hunter2@h:6379", want: "invalid URL scheme"},
		{name: "sentinel bad option", url: "redis://s1:26379?master_name=m&password=hunter2&bogus=1", want: "unexpected option: bogus"},
		{name: "sentinel empty master", url: "redis://u:hunter2@s1:26379?master_name=", want: "master_name is empty"},
		{name: "sentinel bad addr", url: "redis://s1:26379?master_name=m&sentinel_password=hunter2&addr=nope", want: "unable to parse addr param"},
		{name: "cluster bad addr", url: "redis://u:hunter2@n1:7000?addr=n2", want: "unable to parse addr param: n2"},
		{name: "cluster with db", url: "redis://u:hunter2@n1:7000/3?addr=n2:7001", want: "no database number"},
		{name: "cluster bad option", url: "redis://u:hunter2@n1:7000?addr=n2:7001&db=1", want: "unexpected option: db"},
		{name: "single bad db", url: "redis://u:hunter2@h:6379/x", want: "invalid database number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bus.ParseRedisURL(tt.url)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "hunter2")

			err = bus.Config{ServiceName: "svc", RedisURL: tt.url}.Validate()
			require.Error(t, err)
			assert.True(t, errors.Is(err, bus.ErrInvalidConfig))
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "hunter2")

			_, err = bus.New(bus.Config{ServiceName: "svc", RedisURL: tt.url}, nil)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestRedactURLHidesQueryPasswords(t *testing.T) {
	got := bus.RedactURL("redis://su:spw@s1:26379?master_name=m&username=app&password=hunter2&sentinel_password=hunter3")
	assert.NotContains(t, got, "hunter2")
	assert.NotContains(t, got, "hunter3")
	assert.NotContains(t, got, "spw")
	assert.True(t, strings.Contains(got, "master_name=m"), got)
}

func TestDurabilityConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		d    bus.Durability
		want string
	}{
		{name: "negative replicas", d: bus.Durability{Replicas: -1}, want: "Durability.Replicas -1"},
		{name: "negative timeout", d: bus.Durability{Replicas: 1, Timeout: -1}, want: "Durability.Timeout -1ns"},
		{name: "sub-millisecond timeout", d: bus.Durability{Replicas: 1, Timeout: 10}, want: "at least 1ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := bus.Config{ServiceName: "svc", RedisURL: "redis://h:6379", Durability: tt.d}.Validate()
			require.ErrorIs(t, err, bus.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	require.NoError(t, bus.Config{ServiceName: "svc", RedisURL: "redis://h:6379", Durability: bus.Durability{Replicas: 1}}.Validate())
}
