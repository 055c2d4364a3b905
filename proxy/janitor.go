package proxy

import (
	"context"
	"time"
)

// RunJanitor frees abandoned uploads every `every` until ctx ends and
// repairs the quota holds a crash left behind (upload.Service.RunJanitor).
func (s *Server) RunJanitor(ctx context.Context, every time.Duration) {
	s.svc.RunJanitor(ctx, every)
}

// Streaming says whether a PATCH body is being taken now: the probe
// workers rest between probes while it is (probe.Config.Busy).
func (s *Server) Streaming() bool { return s.metrics.activeUploads.Load() > 0 }
