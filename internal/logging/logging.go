// Package logging builds xrc's zap JSON logger: one line per event, stable
// keys, UTC ISO-8601 timestamps, so CloudWatch Logs Insights can query it.
package logging

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a JSON logger writing to w at level (debug, info, warn, error).
func New(w io.Writer, level string) (*zap.Logger, error) {
	log, _, err := NewLeveled(w, level)
	return log, err
}

// NewLeveled is New with the level it logs at, which SetLevel changes for
// the logger and every one derived from it (a config reloaded in place).
func NewLeveled(w io.Writer, level string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(level)
	if err != nil {
		return nil, lvl, fmt.Errorf("log level %q: %w", level, err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeDuration = zapcore.SecondsDurationEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.AddCaller()), lvl, nil
}
