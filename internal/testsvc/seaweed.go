package testsvc

import (
	"fmt"
	"os"
	"strconv"
)

// SeaweedPorts is how many free loopback ports one `weed server` takes:
// S3, master, volume server and filer, each with its gRPC port. weed
// would put a gRPC port at 10,000 above its HTTP port, past 65,535 for a
// high ephemeral port, so each is given explicitly.
const SeaweedPorts = 8

// SeaweedEnv is added to weed's environment (weed reads WEED_* variables
// as its .toml settings): a new bucket (a collection to weed) grows one
// volume instead of 7, so that many buckets fit in -volume.max.
var SeaweedEnv = []string{"WEED_MASTER_VOLUME_GROWTH_COPY_1=1"}

// SeaweedArgs is the command line of `weed server` on ports (S3 first:
// ports[0] is the endpoint's) storing everything under dir. Everything
// listens on 127.0.0.1 only; the listeners that would otherwise open on
// fixed default ports (Iceberg and Lance catalogs) are off, as are
// metrics (off by default) and the anonymous usage report the master
// otherwise sends out. The benchmark bench/cmd/bigupload runs the same.
func SeaweedArgs(dir string, ports []int) []string {
	port := func(i int) string { return strconv.Itoa(ports[i]) }
	return []string{
		// glog writes its files to the system temp dir unless told to
		// write to stderr, which the test collects.
		"-logtostderr",
		"server",
		"-dir=" + dir,
		"-ip=127.0.0.1",
		"-ip.bind=127.0.0.1",
		"-s3",
		"-s3.port=" + port(0),
		"-s3.port.grpc=" + port(1),
		"-s3.port.iceberg=0",
		"-s3.port.lance=0",
		"-master.port=" + port(2),
		"-master.port.grpc=" + port(3),
		"-master.telemetry=false",
		// A single master: no peer to wait for. Restarted with its raft
		// state resumed, weed took over 30 s here before it stored an
		// object again (an election, then a warm-up that refuses
		// writes); with a fresh raft state it took under 20 s.
		"-master.electionTimeout=1s",
		"-master.resumeState=false",
		"-volume.port=" + port(4),
		"-volume.port.grpc=" + port(5),
		// Volumes are files that grow as they fill (no preallocation):
		// room for one per bucket of a test binary's shared weed.
		"-volume.max=200",
		// SIGKILL ends it anyway; a graceful stop need not wait.
		"-volume.preStopSeconds=0",
		"-filer.port=" + port(6),
		"-filer.port.grpc=" + port(7),
	}
}

// SeaweedSockets are the unix sockets weed makes in /tmp (named by port,
// not under -dir), removed when the test ends: a killed weed leaves them.
func SeaweedSockets(ports []int) []string {
	return []string{
		fmt.Sprintf("/tmp/seaweedfs-s3-%d.sock", ports[0]),
		fmt.Sprintf("/tmp/seaweedfs-s3-grpc-%d.sock", ports[1]),
		fmt.Sprintf("/tmp/seaweedfs-master-grpc-%d.sock", ports[3]),
		fmt.Sprintf("/tmp/seaweedfs-volume-grpc-%d.sock", ports[5]),
		fmt.Sprintf("/tmp/seaweedfs-filer-%d.sock", ports[6]),
		fmt.Sprintf("/tmp/seaweedfs-filer-grpc-%d.sock", ports[7]),
	}
}

// RemoveSeaweedSockets removes SeaweedSockets(ports).
func RemoveSeaweedSockets(ports []int) {
	for _, s := range SeaweedSockets(ports) {
		_ = os.Remove(s)
	}
}
