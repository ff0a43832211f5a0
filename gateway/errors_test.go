package gateway_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/shared-infra/eventbus/gateway"
)

func TestHTTPStatus(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, 200},
		{gateway.ErrNoCredentials, 401},
		{fmt.Errorf("%w: detail", gateway.ErrBadCredentials), 401},
		{fmt.Errorf("%w: detail", gateway.ErrForbidden), 403},
		{errors.New("boom"), 500},
	} {
		if got := gateway.HTTPStatus(tt.err); got != tt.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
