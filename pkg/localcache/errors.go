package localcache

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig is matched (with errors.Is) by every error New returns
	// for a Config it cannot accept. The concrete error is a *ConfigError
	// naming the field.
	ErrInvalidConfig = errors.New("localcache: invalid config")

	// ErrLoadGoexit is returned to every waiter of a flight whose load
	// function called runtime.Goexit (for example t.FailNow in a test)
	// instead of returning.
	ErrLoadGoexit = errors.New("localcache: load called runtime.Goexit")
)

// ConfigError reports a Config field that New rejected. It unwraps to
// ErrInvalidConfig.
type ConfigError struct {
	// Field is the name of the rejected field, such as "Capacity".
	Field string
	// Reason says what the field must be, such as "must be >= 0".
	Reason string
	// Value is the rejected value.
	Value any
}

// Error implements error: "localcache: Config.Capacity must be >= 0 (got -1)".
func (e *ConfigError) Error() string {
	return fmt.Sprintf("localcache: Config.%s %s (got %v)", e.Field, e.Reason, e.Value)
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// PanicError is returned by Cache.Do to every waiter of a flight whose load
// function panicked. The panic is recovered in the goroutine that ran the
// load, so it never crashes the process and never leaves waiters blocked; a
// panicking load is a failed load (fail closed), and nothing is cached.
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the stack of the panicking goroutine, for logging.
	Stack []byte
}

// Error implements error.
func (e *PanicError) Error() string {
	return fmt.Sprintf("localcache: load panicked: %v", e.Value)
}

// Unwrap returns the panic value when it is an error, so errors.Is and
// errors.As see through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
