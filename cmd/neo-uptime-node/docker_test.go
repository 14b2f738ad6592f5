//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

// The Dockerfile is built and run with podman, a real OCI builder and
// runtime from Debian's packages: this machine kind has no Docker engine
// and no container registry. The registry's base images are replaced by
// local stand-ins passed as the Dockerfile's GO_IMAGE and RUNTIME_IMAGE
// arguments: a builder with a static busybox whose Go toolchain, module
// cache and build cache are the host's (mounted read-only or shared), and
// a runtime image laid out like distroless static (/etc/passwd with
// nonroot 65532, CA certificates, /tmp 1777, nothing else).
const podmanEnv = "NEO_REQUIRE_PODMAN"

func TestDocker_ImageBuildsRunsAndStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	for _, tool := range []string{"podman", "busybox", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv(podmanEnv) == "1" {
				t.Fatalf("%s not installed (%s=1): apt-get install podman busybox-static", tool, podmanEnv)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	const image = "localhost/neo-uptime-node:test"
	goImage, runtimeImage := buildStandIns(t)
	goenv := func(k string) string {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	podman(t, "build", "-q", "--isolation", "chroot", "--network", "host",
		"--build-arg", "GO_IMAGE="+goImage, "--build-arg", "RUNTIME_IMAGE="+runtimeImage, "--build-arg", "VERSION=container-test",
		"-v", goenv("GOROOT")+":/usr/local/go:ro", "-v", goenv("GOMODCACHE")+":/go/pkg/mod", "-v", goenv("GOCACHE")+":/root/.cache/go-build",
		"-t", image, root)

	var cfg []struct {
		Size   int64
		Config struct {
			User       string
			Entrypoint []string
			Cmd        []string
			Env        []string
			Volumes    map[string]any
		}
	}
	if err := json.Unmarshal([]byte(podman(t, "image", "inspect", image)), &cfg); err != nil || len(cfg) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	c := cfg[0].Config
	if c.User != "65532:65532" {
		t.Errorf("image user = %q, want the non-root 65532:65532", c.User)
	}
	if strings.Join(c.Entrypoint, " ") != "/usr/local/bin/neo-uptime-node" || strings.Join(c.Cmd, " ") != "run -loop" {
		t.Errorf("entrypoint %v cmd %v, want the binary repeating runs", c.Entrypoint, c.Cmd)
	}
	if _, ok := c.Volumes["/data"]; !ok || !contains(c.Env, "DATABASE_PATH=/data/neo-uptime-node.db") {
		t.Errorf("state not on the /data volume: volumes %v env %v", c.Volumes, c.Env)
	}
	// The binary plus a stand-in base of well under a megabyte.
	if cfg[0].Size > 40<<20 {
		t.Errorf("image is %d MB", cfg[0].Size>>20)
	}
	if out := podmanRun(t, "--rm", image, "version"); !strings.Contains(out, "neo-uptime-node container-test") {
		t.Errorf("version in the container: %q", out)
	}

	// The original's container users: one process repeating runs until
	// SIGTERM, state on a volume owned by the image's user.
	node := startFake(t, &easytiertest.Fake{NetworkName: "n"})
	be := &testBackend{peers: []map[string]any{peer(1, node.TCPURL(), "n", "")}}
	srv := httptest.NewServer(be)
	defer srv.Close()
	data := t.TempDir()
	if err := os.Chown(data, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	name := "neo-loop-" + strings.ToLower(strings.ReplaceAll(t.Name(), "_", "-"))
	podmanQuiet("rm", "-f", name)
	cmd := podmanCmd(append(runFlags(), "--name", name, "-v", data+":/data",
		"-e", "BACKEND_BASE_URL="+srv.URL+"/api", "-e", "API_KEY=test-key-9b1", "-e", "STATUS_REPORT_INTERVAL=1",
		"-e", "NEO_LOG_FORMAT=json", image)...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer podmanQuiet("rm", "-f", name)
	deadline := time.Now().Add(60 * time.Second)
	for len(be.reports()[1]) < 2 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("fewer than two runs reported within a minute; container output:\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// podman run passes SIGTERM on to the container's process.
	stopped := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("container exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("container still running 20 s after SIGTERM:\n%s", logs.String())
	}
	t.Logf("stopped %v after SIGTERM, %d runs reported", time.Since(stopped).Round(time.Millisecond), len(be.reports()[1]))
	if !strings.Contains(logs.String(), "stopping on signal") {
		t.Errorf("no stop line in the container's log:\n%s", logs.String())
	}
	for _, r := range be.reports()[1] {
		if r.Status != "online" {
			t.Errorf("report %+v, want online", r)
		}
	}
	st, err := os.Stat(filepath.Join(data, "neo-uptime-node.db"))
	if err != nil {
		t.Fatalf("no state file on the volume: %v", err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 65532 {
		t.Errorf("state file owned by uid %d, want the image's user 65532", uid)
	}
	if strings.Contains(logs.String(), "test-key-9b1") {
		t.Error("the API key appears in the container's log")
	}
}

// buildStandIns builds the two local base images and returns their names.
func buildStandIns(t *testing.T) (goImage, runtimeImage string) {
	t.Helper()
	bb, _ := exec.LookPath("busybox")
	certs, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, b []byte, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	builder := t.TempDir()
	write(filepath.Join(builder, "busybox"), bin, 0o755)
	write(filepath.Join(builder, "ca-certificates.crt"), certs, 0o644)
	write(filepath.Join(builder, "Containerfile"), []byte(`FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "mkdir", "-m", "1777", "/tmp"]
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/go/bin:/go/bin:/bin HOME=/root GOPATH=/go GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
`), 0o644)
	rt := t.TempDir()
	fs := filepath.Join(rt, "rootfs")
	write(filepath.Join(fs, "etc", "passwd"), []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644)
	write(filepath.Join(fs, "etc", "group"), []byte("root:x:0:\nnonroot:x:65532:\n"), 0o644)
	write(filepath.Join(fs, "etc", "ssl", "certs", "ca-certificates.crt"), certs, 0o644)
	if err := os.Mkdir(filepath.Join(fs, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(fs, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(rt, "Containerfile"), []byte("FROM scratch\nCOPY rootfs/ /\n"), 0o644)
	goImage, runtimeImage = "localhost/neo-test/golang", "localhost/neo-test/static"
	podman(t, "build", "-q", "--isolation", "chroot", "-t", goImage, builder)
	podman(t, "build", "-q", "--isolation", "chroot", "-t", runtimeImage, rt)
	return goImage, runtimeImage
}

// runFlags are podman run's flags for this sandbox: no cgroup setup (the
// kernel has a hybrid hierarchy that crun refuses) and limits below the
// current ones (raising them needs a capability the sandbox lacks).
func runFlags() []string {
	return []string{"run", "--cgroups=disabled", "--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"}
}

// podmanCmd runs podman; with a hybrid cgroup hierarchy it runs in a
// mount namespace of its own without the cgroup2 mount, which crun
// otherwise refuses to start containers under.
func podmanCmd(args ...string) *exec.Cmd {
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil && strings.Contains(string(b), " /sys/fs/cgroup/unified cgroup2 ") {
		return exec.Command("unshare", append([]string{"-m", "sh", "-c", `umount /sys/fs/cgroup/unified && exec podman "$@"`, "sh"}, args...)...)
	}
	return exec.Command("podman", args...)
}

func podman(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := podmanCmd(args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func podmanRun(t *testing.T, args ...string) string {
	t.Helper()
	return podman(t, append(runFlags(), args...)...)
}

func podmanQuiet(args ...string) { _ = podmanCmd(args...).Run() }
