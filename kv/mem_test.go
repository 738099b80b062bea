package kv_test

import (
	"testing"

	"dsh/kv"
	"dsh/kv/kvtest"
)

func TestMem(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store {
		s := kv.NewMem()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
