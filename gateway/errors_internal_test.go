package gateway

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
)

func TestWriteError(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		field, msg  string
		want        string
		wantDecoded ErrorBody
	}{
		{"with field", 400, "type", `invalid event type "Photo..x": tokens must match [a-z0-9_-]+`,
			`{"error":{"status":400,"field":"type","message":"invalid event type \"Photo..x\": tokens must match [a-z0-9_-]+"}}` + "\n",
			ErrorBody{Error: ErrorDetail{Status: 400, Field: "type", Message: `invalid event type "Photo..x": tokens must match [a-z0-9_-]+`}}},
		{"without field", 503, "", "shutting down",
			`{"error":{"status":503,"message":"shutting down"}}` + "\n",
			ErrorBody{Error: ErrorDetail{Status: 503, Message: "shutting down"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeError(rec, tt.status, tt.field, tt.msg)
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("body\n%s\nwant\n%s", got, tt.want)
			}
			var decoded ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &decoded); err != nil || decoded != tt.wantDecoded {
				t.Errorf("decoded %+v, %v; want %+v", decoded, err, tt.wantDecoded)
			}
		})
	}
}

func TestWriteAuthError(t *testing.T) {
	tests := []struct {
		err       error
		status    int
		challenge string
	}{
		{fmt.Errorf("%w: send a token", ErrNoCredentials), 401, `Bearer realm="eventbus"`},
		{fmt.Errorf("%w: token is expired", ErrBadCredentials), 401, `Bearer realm="eventbus", error="invalid_token"`},
		{fmt.Errorf("%w: no publish", ErrForbidden), 403, ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		writeAuthError(rec, tt.err)
		if rec.Code != tt.status {
			t.Errorf("%v: status = %d, want %d", tt.err, rec.Code, tt.status)
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
			t.Errorf("%v: WWW-Authenticate = %q, want %q", tt.err, got, tt.challenge)
		}
		var b ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error.Message != tt.err.Error() || b.Error.Status != tt.status {
			t.Errorf("%v: body %q", tt.err, rec.Body.String())
		}
	}
}
