package main

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// loadData is the data of every load event: the publish time (UnixNano) and
// the addressing kind (b broadcast, u user, r room).
type loadData struct {
	Sent int64  `json:"sent"`
	K    string `json:"k"`
}

// Addressing kinds, in publishing order.
const (
	kindBroadcast = iota
	kindUser
	kindRoom
	numKinds
)

// sseClient is one SSE stream of the driver: what it received.
type sseClient struct {
	lat      []int64 // delivery latencies, ns
	kinds    [numKinds]int
	lastRecv int64     // UnixNano of the last delivery
	ended    error     // the stream ended before the driver stopped it
	endedAt  time.Time // when
	slow     bool      // the gateway said it cut the stream for falling behind
}

var (
	dataPrefix  = []byte("data:")
	sentKey     = []byte(`"sent":`)
	kindKey     = []byte(`"k":"`)
	slowComment = []byte(": disconnected: this client fell too far behind")
)

// read parses the event stream until it ends: for each data line carrying
// loadData it records receive time − publish time. It does not decode the
// JSON, so that the clients take as little of the shared CPU as they can.
func (c *sseClient) read(resp *http.Response, stopping *atomic.Bool, total *atomic.Int64) {
	r := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if !stopping.Load() {
				c.ended, c.endedAt = err, time.Now()
			}
			return
		}
		if !bytes.HasPrefix(line, dataPrefix) {
			if bytes.HasPrefix(line, slowComment) {
				c.slow = true
			}
			continue
		}
		now := time.Now().UnixNano()
		i := bytes.Index(line, sentKey)
		if i < 0 {
			continue
		}
		rest := line[i+len(sentKey):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		sent, err := strconv.ParseInt(string(rest[:j]), 10, 64)
		if err != nil {
			continue
		}
		c.lat = append(c.lat, now-sent)
		c.lastRecv = now
		total.Add(1)
		if k := bytes.Index(line, kindKey); k >= 0 && k+len(kindKey) < len(line) {
			switch line[k+len(kindKey)] {
			case 'b':
				c.kinds[kindBroadcast]++
			case 'u':
				c.kinds[kindUser]++
			case 'r':
				c.kinds[kindRoom]++
			}
		}
	}
}
