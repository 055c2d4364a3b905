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
